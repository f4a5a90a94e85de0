"""The ingest API (FastAPI): the container's lifecycle, error handlers and one router per resource.

Routes live in services/api/routers/ (auth, accounts, subscriptions, orders, copies, admin,
dashboard, ops); what they share (container, caller, role check) in services/api/deps.py;
row → wire mappings in services/api/views.py; the error taxonomy in services/api/errors.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import fields

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from nats.aio.client import Client as NATS

from services.api.dashboard.gateway import Gateway
from services.api.deps import Container, caller_refusal
from services.api.errors import ERROR_RESPONSES, install
from services.api.limits import EdgeLimits
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
    subscriptions,
    webhooks,
)
from services.app.admission import Admission
from services.app.outbox import PublishedMarks
from services.infra import bus
from services.infra.auth import TokenIssuer, hash_password
from services.infra.nats_auth import GATEWAY
from services.infra.settings import Settings
from services.infra.wiring import runtime

ROUTERS = (
    auth,
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
                published=PublishedMarks(rt.engine),
                admission=Admission(rt.redis),
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
    # Outermost: an oversized body is refused before routing, authentication or parsing.
    app.add_middleware(EdgeLimits, max_body_bytes=settings.max_body_bytes)
    return app
