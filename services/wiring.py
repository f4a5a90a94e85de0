"""Shared construction of the broker side of a process: HTTP pools, budgets, adapters."""

from __future__ import annotations

import redis.asyncio as aioredis

from brokers.http import HttpClientPool, HttpSettings
from services.brokerage import BrokerFactory
from services.ratelimit import Budgets
from services.settings import Settings


def broker_factory(
    settings: Settings, redis: aioredis.Redis
) -> tuple[HttpClientPool, BrokerFactory]:
    pool = HttpClientPool(
        HttpSettings(
            connect_timeout_s=settings.broker_connect_timeout_s,
            read_timeout_s=settings.broker_read_timeout_s,
            transport=settings.broker_transport,
        )
    )
    budgets = Budgets(
        redis,
        settings.sim_account_rate_per_min,
        settings.sim_host_rate_per_s,
        settings.budget_max_wait_s,
    )
    return pool, BrokerFactory(pool, settings.sim_url, budgets=budgets)


def redis_client(url: str) -> aioredis.Redis:
    """A pool that waits for a free connection (a 500-leg fan-out reserves budgets at once)."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=64, timeout=5, socket_timeout=2, socket_connect_timeout=2
    )
    return aioredis.Redis(connection_pool=pool)
