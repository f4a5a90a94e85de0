"""Fixtures: real servers. By default the embedded NATS, PostgreSQL and Valkey from the wheels,
on free ports under a temporary directory; COPYTRADE_{NATS,DATABASE,REDIS}_URL point the tests
at other servers instead (a fresh database is created on that server for the run)."""

from __future__ import annotations

import asyncio
import base64
import os
import resource
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from services.dev.embedded import EmbeddedStack, start_stack
from services.infra.db.engine import make_engine
from services.infra.db.migrate import upgrade
from tests.helpers import create_database

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"

# The WebSocket load test opens 1,000 sockets; the services started below inherit this limit.
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(_soft, min(_hard, 65536)), _hard))


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    external = {
        "nats": os.environ.get("COPYTRADE_NATS_URL"),
        "database": os.environ.get("COPYTRADE_DATABASE_URL"),
        "redis": os.environ.get("COPYTRADE_REDIS_URL"),
    }
    stack: EmbeddedStack
    stack, urls = start_stack(
        tmp_path_factory.mktemp("servers"),
        nats_url=external["nats"],
        database_url=external["database"],
        redis_url=external["redis"],
    )
    try:
        if external["database"]:
            urls["database"] = asyncio.run(create_database(external["database"]))
        upgrade(urls["database"])
        urls["external_nats"] = external["nats"] or ""
        yield urls
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def service_env(servers: dict[str, str]) -> dict[str, str]:
    env = {
        "COPYTRADE_DATABASE_URL": servers["database"],
        "COPYTRADE_REDIS_URL": servers["redis"],
        "COPYTRADE_JWT_SECRET": secrets.token_urlsafe(48),
        "COPYTRADE_CREDENTIAL_KEYS": "t1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "COPYTRADE_LOG_LEVEL": "INFO",
    }
    if servers["external_nats"]:
        env["COPYTRADE_NATS_URL"] = servers["external_nats"]
    return env


@pytest.fixture
async def engine(servers: dict[str, str]) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(servers["database"], pool_size=5, max_overflow=5)
    try:
        yield eng
    finally:
        await eng.dispose()


@pytest.fixture
async def redis(servers: dict[str, str]) -> AsyncIterator[aioredis.Redis]:
    """A client of the session's Valkey, closed after the test."""
    client = aioredis.from_url(servers["redis"])
    try:
        yield client
    finally:
        await client.aclose()
