"""Run the ingest API: `python -m services.api` (granian, HTTP/1.1 + h2c)."""

from __future__ import annotations

from granian.constants import HTTPModes, Interfaces, Loops
from granian.server import Server

from services.infra.settings import Settings


def main() -> None:
    settings = Settings.from_env()
    Server(
        "services.api.asgi:app",
        address=settings.api_host,
        port=settings.api_port,
        interface=Interfaces.ASGI,
        http=HTTPModes.auto,
        loop=Loops.uvloop,
        workers=1,
        log_access=False,
    ).serve()


if __name__ == "__main__":
    main()
