"""The API's HTTP/1.1 protocol: uvicorn's httptools protocol with the limits it lacks.

uvicorn bounds neither the time a request takes to arrive nor the size of its line and headers
(its only timer is the keep-alive one, armed after a response; httptools buffers headers without
a cap): a client could hold a connection open forever by sending a header, or its body, a byte
at a time, or make the server buffer megabytes of headers. granian, which served the API before,
bounded its reads. Here a request (line, headers and body) must arrive within
`api_request_timeout_s` of its first byte (the connection is closed otherwise), and its head
within `api_head_max_bytes` (431 and closed). Per request on a kept-alive connection; the wait
between requests is the keep-alive timeout's, and a WebSocket upgrade leaves the deadline once
its head is in. `tests/e2e/test_api_server.py` drives them with raw sockets.
"""

from __future__ import annotations

import asyncio
import logging
from functools import cache
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from services.infra.settings import Settings

log = logging.getLogger("copytrade.api.serving")


class _HeadTooLarge(Exception):
    """Raised inside the parser's callbacks: httptools stops and reports a parser error."""


@cache
def _limits() -> tuple[float, int]:
    settings = Settings.from_env()  # once per process (workers are spawned, not forked)
    return settings.api_request_timeout_s, settings.api_head_max_bytes


class GuardedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a deadline on every request and a size cap on its head."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timeout_s, self._head_max_bytes = _limits()
        self._in_head = True  # the next bytes belong to a request's line and headers
        self._head_bytes = 0
        self._timer: asyncio.TimerHandle | None = None
        self._heads = 0  # heads parsed on this connection
        self._head_size = 0  # this head's URL and headers, as the parser hands them over
        self._oversize = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a connection that never sends anything is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head and self._timer is None:
            self._arm()
        heads = self._heads
        super().data_received(data)
        # Counted after parsing, and only when no head ended in this chunk: a chunk that ends
        # a head carries the body (and may start the next request: at most one read of a head
        # goes uncounted). Still in the same head after it: the chunk counts against the cap.
        if self._in_head and self._heads == heads and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > self._head_max_bytes:
                self._refuse()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_size = 0

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def _count(self, size: int) -> None:
        """A head that arrived whole in one read is measured here, as it is parsed."""
        self._head_size += size
        if self._head_size > self._head_max_bytes:
            self._oversize = True
            raise _HeadTooLarge  # the parser stops; uvicorn answers through send_400_response

    def send_400_response(self, msg: str) -> None:
        if self._oversize:
            self._refuse()
            return
        super().send_400_response(msg)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._heads += 1
        if self.parser.should_upgrade() and self._should_upgrade():
            self._disarm()  # a WebSocket's life is not a request's: its protocol takes over
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()  # the request is in; its response may take as long as it takes
        super().on_message_complete()
        self._in_head, self._head_bytes = True, 0  # the next request's head starts now
        # Armed when its first bytes arrive: between requests uvicorn's keep-alive timer rules.

    def _arm(self) -> None:
        self._disarm()
        self._timer = self.loop.call_later(self._timeout_s, self._timed_out)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        if not self.transport.is_closing():
            log.info("closing a connection whose request did not arrive in time")
            self.transport.close()

    def _refuse(self) -> None:
        self._disarm()
        if self.transport.is_closing():
            return
        log.info("refusing a request head over %d bytes", self._head_max_bytes)
        body = b"request line and headers too large"
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: text/plain; charset=utf-8\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n"
            b"connection: close\r\n\r\n" + body
        )
        self.transport.close()
