"""A worker's operator endpoint on its metrics port: GET /metrics, /healthz, /readyz.

The API serves these itself; replicators, the sweeper and the poller have no HTTP server of
their own, so this small asyncio one answers Prometheus and the orchestrator's probes (a
Kubernetes readinessProbe on /readyz: NATS connected, PostgreSQL and Redis answering).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[None]]
CHECK_TIMEOUT_S = 2.0


async def readiness(checks: Mapping[str, Check]) -> tuple[bool, dict[str, str]]:
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_S):
                await check()
            results[name] = "ok"
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            results[name] = f"unavailable: {type(exc).__name__}"
    return all(value == "ok" for value in results.values()), results


class OpsServer:
    def __init__(self, host: str, port: int, checks: Mapping[str, Check]) -> None:
        self.host, self.port = host, port
        self._checks = checks
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _respond(self, path: str) -> tuple[int, str, bytes]:
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest()
        if path == "/healthz":
            return 200, "application/json", b'{"status":"ok"}'
        if path == "/readyz":
            ready, results = await readiness(self._checks)
            body = {"status": "ready" if ready else "not_ready", "checks": results}
            return (200 if ready else 503), "application/json", json.dumps(body).encode()
        return 404, "application/json", b'{"error":"not_found"}'

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                request_line = await reader.readline()
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass  # headers: nothing we need
            parts = request_line.decode("latin-1").split()
            path = parts[1].split("?", 1)[0] if len(parts) >= 2 else "/"
            status, content_type, body = await self._respond(path)
            reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.debug("ops request failed", exc_info=True)
        finally:
            writer.close()
