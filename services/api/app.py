"""The ingest API (FastAPI): the container's lifecycle, error handlers and one router per resource.

Routes live in services/api/routers/ (auth, accounts, subscriptions, orders, copies, admin,
dashboard, ops); what they share (container, caller, role check) in services/api/deps.py;
row → wire mappings in services/api/views.py; the error taxonomy in services/api/errors.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import redis.asyncio as aioredis
from fastapi import FastAPI

from services.api.dashboard.gateway import Gateway
from services.api.deps import Container
from services.api.errors import install
from services.api.request_ids import RequestIds
from services.api.routers import (
    accounts,
    admin,
    auth,
    copies,
    dashboard,
    ops,
    orders,
    subscriptions,
)
from services.app.outbox import PublishedMarks
from services.infra import bus
from services.infra.auth import TokenIssuer, hash_password
from services.infra.crypto import CredentialCipher
from services.infra.db.engine import make_engine
from services.infra.settings import Settings

ROUTERS = (auth, accounts, subscriptions, orders, admin, copies, dashboard, ops)


async def open_container(settings: Settings) -> Container:
    """Connect everything the routes use (explicit pool sizes and timeouts)."""
    nats_url, database_url, redis_url = settings.require_urls()
    jwt_secret, keys = settings.require_secrets()
    engine = make_engine(database_url, pool_size=settings.api_db_pool, max_overflow=0)
    nc = await bus.connect(nats_url, "copytrade-api")
    js = nc.jetstream()
    await bus.ensure_stream(js, settings.stream_replicas)
    return Container(
        settings=settings,
        engine=engine,
        nc=nc,
        js=js,
        redis=aioredis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2),
        cipher=CredentialCipher.from_setting(keys),
        issuer=TokenIssuer(jwt_secret, settings.jwt_issuer, settings.jwt_audience),
        dummy_hash=hash_password("not-a-real-password", settings.password_hash_n),
        gateway=Gateway(),
        published=PublishedMarks(engine),
    )


def make_lifespan(
    settings: Settings,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        c = await open_container(settings)
        app.state.container = c
        await c.gateway.start(c.nc)
        c.published.start()
        try:
            yield
        finally:
            await c.published.close()
            await c.gateway.stop()
            await bus.close(c.nc)
            await c.redis.aclose()
            await c.engine.dispose()

    return lifespan


def build_app(settings: Settings) -> FastAPI:
    app = FastAPI(title="copytrade ingest API", version="1", lifespan=make_lifespan(settings))
    install(app)
    app.add_middleware(RequestIds)
    for module in ROUTERS:
        app.include_router(module.router)
    return app
