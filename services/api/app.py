"""The ingest API (FastAPI): the container's lifecycle, error handlers and one router per resource.

Routes live in services/api/routers/ (auth, accounts, subscriptions, orders, copies, admin,
dashboard, ops); what they share (container, caller, role check) in services/api/deps.py;
row → wire mappings in services/api/views.py; the error taxonomy in services/api/errors.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import fields

import redis.asyncio as aioredis
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from nats.aio.client import Client as NATS

from services.api.dashboard.gateway import Gateway
from services.api.deps import Container, caller_refusal
from services.api.errors import ERROR_RESPONSES, install
from services.api.limits import EdgeLimits
from services.api.openapi import install_openapi
from services.api.request_ids import RequestIds
from services.api.routers import (
    account_changes,
    accounts,
    admin,
    admin_lists,
    auth,
    brokers,
    copies,
    dashboard,
    history,
    masters,
    ops,
    orders,
    pnl,
    sessions,
    subscriptions,
    webhooks,
)
from services.app.admission import Admission
from services.app.outbox import PublishedMarks
from services.infra import bus
from services.infra.auth import TokenIssuer, hash_password
from services.infra.db.engine import autocommit
from services.infra.nats_auth import GATEWAY
from services.infra.settings import Settings
from services.infra.throttle import TokenBuckets
from services.infra.wiring import runtime

ROUTERS = (
    auth,
    sessions,
    accounts,
    account_changes,
    subscriptions,
    masters,
    orders,
    admin,
    admin_lists,
    brokers,
    copies,
    history,
    pnl,
    webhooks,
    dashboard,
    ops,
)


def _write_limits(settings: Settings, redis: aioredis.Redis) -> TokenBuckets | None:
    rate, burst = settings.writes_per_user_per_s, settings.write_burst_per_user
    return TokenBuckets(redis, rate, burst, "copytrade:writes:user") if rate > 0 else None


DESCRIPTION = """Master → follower copy trading. Sign in with `POST /v1/auth/token`, then send
`Authorization: Bearer <access_token>` (the **Authorize** button here). Access tokens expire
(`expires_in` seconds; a 401 `token_expired`): exchange the refresh token at
`POST /v1/auth/refresh` for a new pair. Every refusal is `{"error": {"code", "message",
"details"}}` with the codes listed per operation. Decimals are strings; times RFC 3339 UTC."""


def make_lifespan(
    settings: Settings,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        jwt_secret, _ = settings.require_secrets()
        async with runtime(settings, "api", settings.api_db_pool, max_overflow=0, ops=False) as rt:
            c = Container(
                **{f.name: getattr(rt, f.name) for f in fields(rt)},
                issuer=TokenIssuer(jwt_secret, settings.jwt_issuer, settings.jwt_audience),
                dummy_hash=hash_password("not-a-real-password", settings.password_hash_n),
                gateway=Gateway(),
                published=PublishedMarks(autocommit(rt.engine)),
                admission=Admission(rt.redis),
                writes=_write_limits(settings, rt.redis),
            )
            app.state.container = c
            own = await _gateway_connection(settings)
            await c.gateway.start(own or c.nc)
            c.published.start()
            try:
                yield
            finally:
                await c.published.close()
                await c.gateway.stop()
                if own is not None:
                    await bus.close(own)

    return lifespan


async def _gateway_connection(settings: Settings) -> NATS | None:
    """The dashboard gateway's own NATS user (subscribe to events only), when configured."""
    if not (settings.nats_url and settings.nats_gateway_password):
        return None
    return await bus.connect(
        settings.nats_url, "copytrade-gateway", GATEWAY, settings.nats_gateway_password
    )


def build_app(settings: Settings) -> FastAPI:
    docs = settings.docs_on  # off in production unless COPYTRADE_DOCS_ENABLED=true
    app = FastAPI(
        title="copytrade ingest API",
        version="1",
        description=DESCRIPTION,
        lifespan=make_lifespan(settings),
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    install(app, caller_refusal)
    app.add_middleware(RequestIds)
    for module in ROUTERS:
        app.include_router(module.router, responses=ERROR_RESPONSES)
    app.mount("/static", StaticFiles(directory=dashboard.STATIC), name="static")
    install_openapi(app)
    # Outermost: an oversized body is refused before routing, authentication or parsing.
    app.add_middleware(EdgeLimits, max_body_bytes=settings.max_body_bytes)
    return app
