"""The one composition root: what every process (API, replicator, sweeper, poller) connects
to, built and closed in one place; the API adds only its own parts on top (services/api/app.py)."""

from __future__ import annotations

import asyncio
import gc
import signal
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from nats.aio.client import Client as NATS
from nats.js.client import JetStreamContext
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from brokers.http import HttpClientPool, HttpSettings
from brokers.registry import SIM
from brokers.sim.descriptor import limits as sim_limits
from services.infra import bus, monitor, webhook_bus
from services.infra.brokerage import BrokerFactory
from services.infra.crypto import CredentialCipher
from services.infra.db.engine import make_engine
from services.infra.logs import setup_logging
from services.infra.ops_server import Check, OpsServer
from services.infra.ratelimit import Budgets
from services.infra.settings import Settings


def broker_factory(
    settings: Settings, redis: aioredis.Redis
) -> tuple[HttpClientPool, BrokerFactory]:
    pool = HttpClientPool(
        HttpSettings(
            connect_timeout_s=settings.broker_connect_timeout_s,
            read_timeout_s=settings.broker_read_timeout_s,
            transport=settings.broker_transport,
            ca_file=settings.broker_ca_file,
        )
    )
    sim = sim_limits(settings.sim_account_rate_per_min, settings.sim_host_rate_per_s)
    budgets = Budgets(redis, settings.budget_max_wait_s, {SIM.name: sim})
    urls = {**settings.broker_urls, SIM.name: settings.sim_url}
    return pool, BrokerFactory(pool, urls, budgets=budgets)


def redis_client(url: str) -> aioredis.Redis:
    """A pool that waits for a free connection (a 500-leg fan-out reserves budgets at once)."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=64, timeout=5, socket_timeout=2, socket_connect_timeout=2
    )
    return aioredis.Redis(connection_pool=pool)


@dataclass
class Runtime:
    """What every process runs with."""

    settings: Settings
    engine: AsyncEngine
    nc: NATS
    js: JetStreamContext
    redis: aioredis.Redis
    factory: BrokerFactory
    cipher: CredentialCipher


def readiness_checks(engine: AsyncEngine, nc: NATS, redis: aioredis.Redis) -> dict[str, Check]:
    async def database() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def nats_server() -> None:
        if not nc.is_connected:
            raise ConnectionError("not connected")

    async def redis_server() -> None:
        await redis.ping()

    return {"database": database, "nats": nats_server, "redis": redis_server}


@asynccontextmanager
async def runtime(
    settings: Settings,
    name: str,
    pool_size: int,
    max_overflow: int | None = None,
    *,
    monitoring: bool = False,
    ops: bool = True,
) -> AsyncIterator[Runtime]:
    """Connect everything a process needs, and close it all in reverse on the way out.
    With a metrics port (and `ops`: the API serves its own), serve /metrics, /healthz and
    /readyz on it; with `monitoring`, also keep the lag, backlog and dead-letter gauges
    (services/infra/monitor.py) current."""
    nats_url, database_url, redis_url = settings.require_urls()
    _, keys = settings.require_secrets()
    overflow = pool_size if max_overflow is None else max_overflow
    engine = make_engine(database_url, pool_size=pool_size, max_overflow=overflow)
    nc = await bus.connect(nats_url, f"copytrade-{name}", *settings.nats_auth())
    redis = redis_client(redis_url)
    pool, factory = broker_factory(settings, redis)
    server: OpsServer | None = None
    watcher: asyncio.Task[None] | None = None
    try:
        js = nc.jetstream()
        await bus.ensure_stream(js, settings.stream_replicas)
        await webhook_bus.ensure_stream(js, settings.stream_replicas)
        if ops and settings.metrics_port:
            server = OpsServer(
                settings.metrics_host, settings.metrics_port, readiness_checks(engine, nc, redis)
            )
            await server.start()
        if monitoring:
            watcher = asyncio.create_task(monitor.run(nc, js, engine, interval_s=5.0))
        yield Runtime(settings, engine, nc, js, redis, factory, CredentialCipher.from_setting(keys))
    finally:
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        if server is not None:
            await server.close()
        await pool.aclose()
        await bus.close(nc)
        await redis.aclose()
        await engine.dispose()


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (the launcher's and a terminal's way to stop us)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


# The cyclic garbage collector on the per-leg path: every leg allocates a few hundred objects,
# which with the default first threshold (700) runs a young collection every few legs. What
# start-up made (modules, classes, the ORM's and pydantic's schemas) is frozen out of every
# collection, and young collections run ten times less often; memory stays bounded (worker
# peak RSS is measured by `make bench`).
GC_THRESHOLDS = (7_000, 10, 10)


def tune_gc() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def serve(main_async: Callable[[Settings], Coroutine[Any, Any, None]]) -> None:
    """Entry point of a service process: logging, uvloop (the metrics endpoint is the runtime's)."""
    setup_logging()
    settings = Settings.from_env()
    import uvloop

    tune_gc()
    uvloop.run(main_async(settings))
