"""Internal authentication: NATS users per service role, PostgreSQL and Valkey passwords, and
workers that take a shard message for a request, never for the truth (issue 11)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import nats
import pytest
import redis.asyncio as aioredis
from nats.aio.client import Client as NATS
from sqlalchemy import text

from schemas.messages import (
    SHARDS_STREAM,
    SHARDS_SUBJECT,
    OrderMessage,
    PlanContext,
    ShardMessage,
)
from services.app.snapshots import Snapshots
from services.dev.credentials import internal_credentials, nats_passwords, role_env
from services.dev.embedded import ServerProcess, start_nats, start_stack
from services.infra import bus
from services.infra.nats_auth import API, GATEWAY, WORKER
from services.infra.positions import MasterPositions
from services.infra.settings import Settings, SettingsError
from services.infra.wiring import runtime
from services.worker.replicator import Replicator
from tests.security.conftest import AppFactory, Client, random_address, settings_for
from tests.security.test_production import SECRETS


@pytest.fixture
def authed_nats(tmp_path: Path) -> Any:
    passwords = nats_passwords(internal_credentials(tmp_path))
    server = start_nats(tmp_path / "nats", passwords=passwords)
    try:
        yield server, passwords
    finally:
        server.stop()


async def _connect(url: str, user: str | None = None, password: str | None = None) -> NATS:
    return await nats.connect(
        url, user=user, password=password, allow_reconnect=False, connect_timeout=2
    )


async def test_a_nats_connection_without_credentials_is_refused(
    authed_nats: tuple[ServerProcess, dict[str, str]],
) -> None:
    server, passwords = authed_nats
    with pytest.raises(Exception, match=r"(?i)authorization"):
        await _connect(server.url)
    with pytest.raises(Exception, match=r"(?i)authorization"):
        await _connect(server.url, WORKER, "wrong-" + passwords[WORKER])
    for role in (API, GATEWAY, WORKER):
        nc = await _connect(server.url, role, passwords[role])
        await nc.close()


async def _refused_publish(nc: NATS, errors: asyncio.Queue[Exception], subject: str) -> str:
    await nc.publish(subject, b"{}")
    await nc.flush()
    return str(await asyncio.wait_for(errors.get(), 10)).lower()


async def test_only_workers_publish_shards_the_gateway_only_subscribes(
    authed_nats: tuple[ServerProcess, dict[str, str]],
) -> None:
    server, passwords = authed_nats
    worker = await bus.connect(server.url, "test-worker", WORKER, passwords[WORKER])
    errors: asyncio.Queue[Exception] = asyncio.Queue()

    async def on_error(exc: Exception) -> None:
        await errors.put(exc)

    api = await nats.connect(
        server.url, user=API, password=passwords[API], error_cb=on_error, allow_reconnect=False
    )
    gateway = await nats.connect(
        server.url, user=GATEWAY, password=passwords[GATEWAY], error_cb=on_error
    )
    try:
        await bus.ensure_stream(worker.jetstream())
        await bus.ensure_stream(api.jetstream())  # the API only reads the streams' info
        assert "permissions violation" in await _refused_publish(api, errors, SHARDS_SUBJECT)
        with pytest.raises(Exception):  # noqa: B017 - a JetStream publish gets no ack either
            await api.jetstream().publish(SHARDS_SUBJECT, b"{}", timeout=1)
        await api.jetstream().publish("orders.someone", b"{}", timeout=5)  # its own job
        assert "permissions violation" in await _refused_publish(gateway, errors, "orders.x")
        info = await worker.jetstream().stream_info(SHARDS_STREAM)
        assert info.state.messages == 0
        await worker.jetstream().publish(SHARDS_SUBJECT, b"{}", timeout=5)
        assert (await worker.jetstream().stream_info(SHARDS_STREAM)).state.messages == 1
    finally:
        for nc in (api, gateway, worker):
            await nc.close()


def test_the_embedded_stack_needs_passwords(tmp_path: Path) -> None:
    stack, urls = start_stack(tmp_path)
    try:
        creds = internal_credentials(tmp_path)
        assert (tmp_path / "internal-credentials.json").stat().st_mode & 0o077 == 0
        assert f":{creds['postgres']}@" in urls["database"]
        assert f":{creds['valkey']}@" in urls["redis"]
        asyncio.run(_servers_refuse_anonymous(urls))
    finally:
        stack.stop()


async def _servers_refuse_anonymous(urls: dict[str, str]) -> None:
    plain_pg = urls["database"].replace("+asyncpg", "").split("@")
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(f"postgresql://postgres:wrong@{plain_pg[1]}")
    pg = await asyncpg.connect(urls["database"].replace("+asyncpg", ""))
    await pg.close()
    anonymous = aioredis.from_url("redis://" + urls["redis"].split("@", 1)[1])
    with pytest.raises(Exception, match=r"(?i)auth"):
        await anonymous.ping()
    await anonymous.aclose()
    with pytest.raises(Exception, match=r"(?i)authorization"):
        await _connect("nats://" + urls["nats"].split("@", 1)[1])


def test_the_launcher_gives_each_child_only_its_role() -> None:
    passwords = {API: "a", GATEWAY: "g", WORKER: "w"}
    url = f"nats://{WORKER}:w@127.0.0.1:4999"
    api = role_env("api", url, passwords)
    assert api["COPYTRADE_NATS_URL"] == "nats://127.0.0.1:4999"
    assert (api["COPYTRADE_NATS_USER"], api["COPYTRADE_NATS_PASSWORD"]) == (API, "a")
    assert "w" not in api.values()
    worker = role_env("worker", url, passwords)
    assert (worker["COPYTRADE_NATS_USER"], worker["COPYTRADE_NATS_PASSWORD"]) == (WORKER, "w")
    assert role_env("simulator", url, passwords)["COPYTRADE_NATS_PASSWORD"] == ""


def test_production_refuses_to_start_without_internal_passwords() -> None:
    bare = {
        **SECRETS,
        "COPYTRADE_NATS_URL": "nats://nats:4222",
        "COPYTRADE_DATABASE_URL": "postgresql+asyncpg://copytrade@postgres:5432/copytrade",
        "COPYTRADE_REDIS_URL": "redis://valkey:6379/0",
    }
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(bare).require_urls()
    for missing in ("COPYTRADE_NATS_PASSWORD", "COPYTRADE_DATABASE_URL", "COPYTRADE_REDIS_URL"):
        assert missing in str(refused.value)
    complete = {
        **bare,
        "COPYTRADE_NATS_USER": "worker",
        "COPYTRADE_NATS_PASSWORD": "p" * 24,
        "COPYTRADE_DATABASE_URL": "postgresql+asyncpg://copytrade:pw@postgres:5432/copytrade",
        "COPYTRADE_REDIS_URL": "redis://:pw@valkey:6379/0",
    }
    Settings.from_env(complete).require_urls()
    Settings.from_env(
        {k: v for k, v in bare.items() if k != "COPYTRADE_ENVIRONMENT"}
    ).require_urls()


async def _replicator(settings: Settings) -> AsyncIterator[Replicator]:
    async with runtime(settings, "forged-shard-test", pool_size=2, ops=False) as rt:
        positions = MasterPositions(rt.redis, 0)
        snapshots = Snapshots(rt.redis, 2.0, 5.0, positions)
        yield Replicator(
            settings, rt.engine, rt.nc, rt.js, rt.cipher, rt.factory, snapshots, positions
        )


async def _order(client: Client, token: str, account: str) -> str:
    body = {
        "client_order_id": os.urandom(8).hex(),
        "account_id": account,
        "symbol": "AAPL",
        "side": "buy",
        "qty": "1",
        "type": "market",
        "time_in_force": "day",
    }
    r = await client.http.post("/v1/orders", headers=client.auth(token), json=body)
    assert r.status_code in (201, 202), r.text
    order_id: str = r.json()["order_id"]
    return order_id


async def test_a_forged_shard_copies_into_no_account_outside_the_plan(
    api_app: AppFactory,
    simulator: str,
    servers: dict[str, str],
    service_env: dict[str, str],
) -> None:
    """Master A's real order, re-addressed to master B (whom the victim follows) and naming the
    victim's account, with no halt: nothing is recorded for the victim."""
    async with api_app() as app:
        client = Client(app, random_address())
        _, token_a = await client.user("master", copy_access="open")
        master_b, _ = await client.user("master", copy_access="open")
        _, victim_token = await client.user("follower")
        victim = await client.sim_account(victim_token, simulator)
        body = {
            "master_id": master_b,
            "account_id": victim,
            "sizing": {"mode": "fixed", "qty": "1"},
        }
        r = await client.http.post(
            "/v1/subscriptions", headers=client.auth(victim_token), json=body
        )
        assert r.status_code == 201, r.text
        order_id = await _order(client, token_a, await client.sim_account(token_a, simulator))
        now = datetime.now(UTC)
        forged = ShardMessage(
            order=OrderMessage(
                order_id=order_id,
                master_id=master_b,
                account_id=victim,
                client_order_id="forged",
                symbol="AAPL",
                side="buy",
                qty="1",
                type="market",
                time_in_force="day",
                created_at=now,
            ),
            shard=1,
            shards=2,
            context=PlanContext(planned_at=now, trading_day=now.date(), reference_price="100"),
            account_ids=[victim],
        )
        settings = settings_for(servers, service_env, simulator)
        async for replicator in _replicator(settings):
            await replicator.replicate_shard(forged, None)
            async with replicator.engine.connect() as conn:
                legs = await conn.execute(
                    text("SELECT count(*) FROM legs WHERE account_id = CAST(:a AS uuid)"),
                    {"a": victim},
                )
                assert legs.scalar_one() == 0
