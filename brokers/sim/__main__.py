"""Run the simulator: `python -m brokers.sim [--host H] [--port P] [--tls-dir DIR]`.

Plain: HTTP/1.1 and h2c (HTTP/2 with prior knowledge) on one port. With a TLS directory
(COPYTRADE_SIM_TLS_DIR): https only, HTTP/2 or HTTP/1.1 as ALPN negotiates, with a certificate
made at start (brokers/sim/tls.py); clients trust DIR/ca.pem.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from granian.constants import HTTPModes, Interfaces, Loops
from granian.http import HTTP2Settings
from granian.server import Server


def main() -> None:
    parser = argparse.ArgumentParser(description="copytrade broker simulator (Alpaca v2 wire)")
    parser.add_argument("--host", default=os.environ.get("COPYTRADE_SIM_HOST", "127.0.0.1"))
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("COPYTRADE_SIM_PORT", "8100"))
    )
    parser.add_argument("--tls-dir", default=os.environ.get("COPYTRADE_SIM_TLS_DIR") or None)
    args = parser.parse_args()
    tls: dict[str, Any] = {}
    if args.tls_dir:
        from brokers.sim.tls import make_certificates

        directory = Path(args.tls_dir)
        make_certificates(directory)
        tls = {"ssl_cert": directory / "cert.pem", "ssl_key": directory / "key.pem"}
    server = Server(
        "brokers.sim.asgi:app",
        address=args.host,
        port=args.port,
        interface=Interfaces.ASGI,
        http=HTTPModes.auto,
        loop=Loops.uvloop,
        workers=1,
        log_access=False,
        http2_settings=HTTP2Settings(max_concurrent_streams=1000),
        # Several replicators at once open thousands of keep-alive connections in one burst;
        # granian's default backlog (1024) drops the rest, which looks like a broker outage.
        backlog=4096,
        backpressure=4096,
        **tls,
    )
    server.serve()


if __name__ == "__main__":
    main()
