"""A lean HTTP/1.1 transport for httpx: keep-alive connections over asyncio streams.

httpx's default stack spends most of a broker request's CPU below its API (httpcore's pool,
h11/h2 state machines, anyio). This transport keeps the httpx API for the adapters and does
only what broker calls need: one request per connection at a time, Content-Length or chunked
bodies, keep-alive reuse, TLS via the standard ssl module, and the same timeout semantics
(connect / read / write / pool) so the error taxonomy still holds: a failure before the
request was written raises ConnectError or PoolTimeout (not sent), any later one a ReadTimeout
or RemoteProtocolError (outcome unknown).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import defaultdict

import httpx

_IDLE = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class LeanTransport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        max_connections: int = 256,
        ssl_context: ssl.SSLContext | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> None:
        self._max = max_connections
        self._idle: dict[tuple[str, str, int], list[_IDLE]] = defaultdict(list)
        self._slots: dict[tuple[str, str, int], asyncio.Semaphore] = {}
        self._ssl = ssl_context or ssl.create_default_context()
        self._timeout = timeout or httpx.Timeout(5.0)

    def _slot(self, key: tuple[str, str, int]) -> asyncio.Semaphore:
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = asyncio.Semaphore(self._max)
        return slot

    async def _connect(self, key: tuple[str, str, int], connect_s: float | None) -> _IDLE:
        idle = self._idle[key]
        while idle:
            reader, writer = idle.pop()
            if not reader.at_eof() and not writer.is_closing():
                return reader, writer
            writer.close()
        scheme, host, port = key
        try:
            return await asyncio.wait_for(
                asyncio.open_connection(
                    host,
                    port,
                    ssl=self._ssl if scheme == "https" else None,
                    server_hostname=host if scheme == "https" else None,
                ),
                connect_s,
            )
        except (OSError, TimeoutError) as exc:
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {exc!r}") from exc

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        url = request.url
        port = url.port or (443 if url.scheme == "https" else 80)
        key = (url.scheme, url.host, port)
        slot = self._slot(key)
        try:
            # asyncio.timeout, not wait_for: wait_for wraps the wait in a task of its own
            # (Python 3.11), which costs more than the rest of a warm request.
            if slot.locked():
                async with asyncio.timeout(timeouts.get("pool", self._timeout.pool)):
                    await slot.acquire()
            else:
                await slot.acquire()
        except TimeoutError as exc:
            raise httpx.PoolTimeout("no connection free in time") from exc
        try:
            reader, writer = await self._connect(
                key, timeouts.get("connect", self._timeout.connect)
            )
            body = request.content
            target = url.raw_path.decode()
            lines = [f"{request.method} {target} HTTP/1.1", f"Host: {url.netloc.decode()}"]
            lines += [
                f"{name.decode()}: {value.decode()}"
                for name, value in request.headers.raw
                if name.lower() != b"host"
            ]
            if body and b"content-length" not in {n.lower() for n, _ in request.headers.raw}:
                lines.append(f"Content-Length: {len(body)}")
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
            try:
                async with asyncio.timeout(timeouts.get("read", self._timeout.read)):
                    status, headers, content, keep = await self._read_response(
                        reader, request.method
                    )
            except TimeoutError as exc:
                writer.close()
                raise httpx.ReadTimeout("no answer in time", request=request) from exc
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                writer.close()
                raise httpx.RemoteProtocolError(
                    f"broken response: {exc!r}", request=request
                ) from exc
            if keep:
                self._idle[key].append((reader, writer))
            else:
                writer.close()
            return httpx.Response(
                status, headers=headers, content=content, extensions={"http_version": b"HTTP/1.1"}
            )
        finally:
            slot.release()

    @staticmethod
    async def _read_response(
        reader: asyncio.StreamReader, method: str
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes, bool]:
        status_line = await reader.readline()
        if not status_line:
            raise asyncio.IncompleteReadError(b"", None)
        parts = status_line.split(None, 2)
        status = int(parts[1])
        headers: list[tuple[bytes, bytes]] = []
        length: int | None = None
        chunked = False
        keep = True
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n"):
                break
            if not line:
                raise asyncio.IncompleteReadError(b"", None)
            name, _, value = line.partition(b":")
            name, value = name.strip(), value.strip()
            headers.append((name, value))
            lowered = name.lower()
            if lowered == b"content-length":
                length = int(value)
            elif lowered == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif lowered == b"connection" and value.lower() == b"close":
                keep = False
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return status, headers, b"", keep
        if chunked:
            chunks = []
            while True:
                size = int((await reader.readline()).split(b";")[0], 16)
                if size == 0:
                    await reader.readline()
                    break
                chunks.append(await reader.readexactly(size))
                await reader.readexactly(2)
            headers = [(n, v) for n, v in headers if n.lower() != b"transfer-encoding"]
            return status, headers, b"".join(chunks), keep
        if length is None:
            return status, headers, await reader.read(), False
        return status, headers, await reader.readexactly(length), keep

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for _, writer in idle:
                writer.close()
        self._idle.clear()
