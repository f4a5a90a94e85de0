"""A loopback venue standing in for Alpaca, Binance and Kite in the end-to-end stack: it refuses
every key the way each broker documents it (this machine has no network; without a venue,
linking an account of a real broker answers 503 `unavailable`). Served like the simulator
(granian: HTTP/1.1 and h2c on one port, which the production HTTP/2 pool speaks).

    python -m tests.e2e.venue --port P
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from granian.constants import HTTPModes, Interfaces
from granian.server import Server


def refusal(path: str) -> tuple[int, dict[str, Any]]:
    if path.startswith("/v2/"):  # Alpaca Trading API
        return 401, {"code": 40110000, "message": "request is not authorized"}
    if path.startswith("/api/v3/"):  # Binance spot
        return 401, {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}
    return 403, {  # Kite Connect
        "status": "error",
        "message": "Incorrect `api_key` or `access_token`.",
        "data": None,
        "error_type": "TokenException",
    }


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    status, body = refusal(scope["path"])
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    Server(
        "tests.e2e.venue:app",
        address="127.0.0.1",
        port=args.port,
        interface=Interfaces.ASGI,
        http=HTTPModes.auto,
        workers=1,
        log_access=False,
    ).serve()


if __name__ == "__main__":
    main()
