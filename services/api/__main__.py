"""Run the ingest API: `python -m services.api` (uvicorn on uvloop, httptools, websockets).

`COPYTRADE_API_WORKERS` processes (default: the CPU count in production, 1 in development)
share `COPYTRADE_API_HOST`:`COPYTRADE_API_PORT`. With one, the server runs in this process;
with more, this process supervises them: a worker that dies or stops answering its health
check is replaced, and each worker dies with this process (`exit_with_parent`). Prometheus
counters are then kept per process in a directory and summed by /metrics (prometheus_client's
multiprocess mode).

uvicorn rather than granian (which serves the simulator): the same app used 8-15% less CPU per
accepted order and answered with a lower p99 (README, "Issue 13, seventh pass"). It speaks
HTTP/1.1 only: h2c, which granian also offered on this port, is gone (this service's HTTP/2 is
its broker side; a client that wants HTTP/2 gets it from a proxy in front).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import uvicorn

from services.api.serving import GuardedHttpTools
from services.infra.settings import Settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
GRACEFUL_SHUTDOWN_S = 10  # requests in flight may finish; open WebSockets are closed (1012)


def _multiprocess_metrics(settings: Settings) -> None:
    """A fresh directory for this server's processes' metric files (before they start)."""
    if os.environ.get(MULTIPROC_ENV):
        return
    directory = Path(settings.data_dir).resolve() / f"api-metrics-{settings.api_port}"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(directory)


def main() -> None:
    settings = Settings.from_env()
    workers = settings.api_processes
    if workers > 1:
        _multiprocess_metrics(settings)
    uvicorn.run(
        "services.api.asgi:app",
        host=settings.api_host,
        port=settings.api_port,
        workers=workers,
        loop="uvloop",
        http=GuardedHttpTools,  # httptools with a deadline and a size cap on request heads
        ws="websockets-sansio",  # the websockets library's current API, not its legacy one
        ws_max_size=64 * 1024,  # the dashboard reads nothing from its clients: 64 KiB is plenty
        lifespan="on",
        log_config=None,  # our structured logging (services.infra.logs), not uvicorn's
        access_log=False,
        server_header=False,  # no "server: uvicorn" to whoever asks
        # The client's address is the peer's: X-Forwarded-For is not trusted from anyone
        # (uvicorn would trust it from 127.0.0.1 by default), as under granian.
        proxy_headers=False,
        backlog=4096,
        limit_concurrency=settings.api_max_concurrency,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )


if __name__ == "__main__":
    main()
