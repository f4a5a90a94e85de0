"""Edge limits applied before any route runs: the request body size (413 payload_too_large,
before parsing and before authentication) and the headers every answer carries.

A pure ASGI middleware: a declared Content-Length over the limit is refused without reading;
a chunked body is counted as it arrives and refused once it passes the limit."""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


class _TooLarge(Exception):
    pass


def _too_large_body(limit: int) -> bytes:
    return json.dumps(
        {
            "error": {
                "code": "payload_too_large",
                "message": f"request bodies are limited to {limit} bytes",
                "details": {"limit": limit},
            }
        }
    ).encode()


class EdgeLimits:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = {"started": False, "exceeded": False, "answered": False}

        async def guarded_send(message: Message) -> None:
            if state["exceeded"]:  # whatever the app answers to a cut-off body, we answer 413
                if not state["answered"]:
                    state["answered"] = True
                    await self._refuse(send)
                return
            if message["type"] == "http.response.start":
                state["started"] = True
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        if self.limit and _declared_length(scope) > self.limit:
            await self._refuse(send)
            return
        try:
            await self.app(scope, self._counting(receive, state), guarded_send)
        except _TooLarge:
            if not state["started"] and not state["answered"]:
                await self._refuse(send)

    def _counting(self, receive: Receive, state: dict[str, bool]) -> Receive:
        if not self.limit:
            return receive
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    state["exceeded"] = True
                    raise _TooLarge()
            return message

        return counted

    async def _refuse(self, send: Any) -> None:
        body = _too_large_body(self.limit)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    *SECURITY_HEADERS,
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _declared_length(scope: Scope) -> int:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0
