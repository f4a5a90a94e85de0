"""The dashboard: its page (GET /), socket tokens (POST /v1/ws/token) and the socket (WS /v1/ws).

A socket offers the subprotocols `copytrade.v1, <ws token>`; the server answers `copytrade.v1`,
sends a snapshot of what the caller may see, then pushes the gateway's events until the client
leaves or the access token the socket token was minted from expires.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Response, WebSocket, WebSocketDisconnect

from schemas.api import WsToken
from services.api.dashboard.gateway import WS_REFUSED
from services.api.deps import Auth, Container, Deps
from services.api.routers.copies import recent_copies
from services.api.routers.orders import recent_orders
from services.infra.auth import Principal, TokenError
from services.infra.settings import Settings

router = APIRouter()

PROTOCOL = "copytrade.v1"
STATIC = Path(__file__).resolve().parents[1] / "dashboard" / "static"
PAGE = STATIC / "index.html"
# No 'unsafe-inline': the page's script and style are files under /static.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    "connect-src 'self' ws: wss:; img-src 'self' data:; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'; object-src 'none'"
)
SNAPSHOT_COPIES = 50
SNAPSHOT_ORDERS = 20


def allowed_origins(settings: Settings) -> set[str]:
    """COPYTRADE_ALLOWED_ORIGINS, or else the API's own origin."""
    configured = {
        origin.strip().rstrip("/")
        for origin in (settings.allowed_origins or "").split(",")
        if origin.strip()
    }
    return configured or {
        f"http://{host}:{settings.api_port}"
        for host in (settings.api_host, "127.0.0.1", "localhost")
    }


@router.post("/v1/ws/token", response_model=WsToken)
async def ws_token(user: Auth, c: Deps) -> WsToken:
    """A short-lived token for opening one WebSocket; the socket lives as long as the
    access token it was minted from."""
    ttl = c.settings.ws_token_ttl_s
    token = c.issuer.issue(user, ttl, websocket=True, session_expires_at=user.expires_at)
    return WsToken(token=token, expires_in=ttl)


async def _refuse(websocket: WebSocket, reason: str) -> None:
    WS_REFUSED.labels(reason).inc()
    await websocket.close(code=1008, reason=reason)


async def _admission(c: Container, user: Principal) -> str | None:
    """Why this socket's token may not open it (None: it may): one socket per token (its jti
    is spent in Redis for the token's lifetime), and at most N sockets per user."""
    cap = c.settings.ws_sockets_per_user
    if cap and c.gateway.sockets_of(user.user_id) >= cap:
        return "too many sockets for this user"
    if user.token_id is None:
        return "invalid token"
    spent = await c.redis.set(
        f"ws:jti:{user.token_id}", "1", nx=True, ex=c.settings.ws_token_ttl_s + 10
    )
    return None if spent else "token already used"


async def _accept(websocket: WebSocket, c: Container) -> Principal | None:
    """Accept the socket, then the caller of its token; None once refused (and closed)."""
    offered = [
        p.strip()
        for p in websocket.headers.get("sec-websocket-protocol", "").split(",")
        if p.strip()
    ]
    await websocket.accept(subprotocol=PROTOCOL if PROTOCOL in offered else None)
    refusal: str | None = None
    user: Principal | None = None
    tokens = [p for p in offered if p != PROTOCOL]
    if (websocket.headers.get("origin") or "").rstrip("/") not in allowed_origins(c.settings):
        refusal = "origin not allowed"
    elif PROTOCOL not in offered or len(tokens) != 1:
        refusal = "subprotocols must be copytrade.v1 and a token"
    else:
        try:
            user = c.issuer.verify(tokens[0], websocket=True)
        except TokenError as exc:
            refusal = str(exc)
        else:
            if user.role not in ("follower", "master"):
                refusal = "role has no dashboard"
            else:
                refusal = await _admission(c, user)
    if refusal is not None:
        await _refuse(websocket, refusal)
        return None
    return user


async def _until_disconnect(websocket: WebSocket) -> None:
    """Read (and ignore) what the client sends until it goes away."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return


async def _snapshot(c: Container, user: Principal) -> str:
    if user.role == "follower":
        copies = await recent_copies(c, user.user_id, None, SNAPSHOT_COPIES)
        body = {"type": "snapshot", "copies": [copy.model_dump(mode="json") for copy in copies]}
    else:
        orders = await recent_orders(c, user.user_id, SNAPSHOT_ORDERS)
        body = {"type": "snapshot", "orders": [o.model_dump(mode="json") for o in orders]}
    return json.dumps(body)


@router.websocket("/v1/ws")
async def websocket_endpoint(websocket: WebSocket) -> None:
    c: Container = websocket.app.state.container
    user = await _accept(websocket, c)
    if user is None:
        return
    client = c.gateway.register(user.user_id, user.role, websocket)
    tasks: list[asyncio.Task[Any]] = []
    try:
        await websocket.send_text(await _snapshot(c, user))
        session_left = (user.expires_at or 0) - time.time()
        tasks = [
            asyncio.create_task(client.pump()),
            asyncio.create_task(_until_disconnect(websocket)),
            asyncio.create_task(asyncio.sleep(max(0.0, session_left))),
        ]
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if tasks[2] in done:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await _refuse(websocket, "session expired")
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass
    finally:
        for task in tasks:
            task.cancel()
        c.gateway.unregister(client)


@router.get("/", include_in_schema=False)
async def dashboard_page() -> Response:
    return Response(
        PAGE.read_bytes(),
        media_type="text/html; charset=utf-8",
        headers={"Cache-Control": "no-cache", "Content-Security-Policy": CSP},
    )
