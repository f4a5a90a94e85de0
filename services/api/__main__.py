"""Run the ingest API: `python -m services.api` (granian, HTTP/1.1 + h2c).

`COPYTRADE_API_WORKERS` processes (default: the CPU count in production, 1 in development)
share `COPYTRADE_API_HOST`:`COPYTRADE_API_PORT`. With more than one, Prometheus counters are
kept per process in a directory and summed by /metrics (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from granian.constants import HTTPModes, Interfaces, Loops
from granian.server import Server

from services.infra.settings import Settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


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
    Server(
        "services.api.asgi:app",
        address=settings.api_host,
        port=settings.api_port,
        interface=Interfaces.ASGI,
        http=HTTPModes.auto,
        loop=Loops.uvloop,
        workers=workers,
        log_access=False,
    ).serve()


if __name__ == "__main__":
    main()
