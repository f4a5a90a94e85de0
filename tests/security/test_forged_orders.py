"""An ORDERS message is a request to work on an order id, never the order itself: a forged one
(another master, another symbol and quantity for a stored order's id; an id nothing stores)
copies nothing from its forged fields (issue 11, "internal trust")."""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.common import Side
from schemas.messages import OrderMessage
from tests.builders import order_message
from tests.helpers import eventually
from tests.security.conftest import AppFactory, Client, random_address, settings_for
from tests.security.test_internal_auth import _order, _replicator


def _forged(order_id: str, master_id: str, account_id: str) -> OrderMessage:
    return order_message(
        order_id=order_id,
        master_id=master_id,
        account_id=account_id,
        client_order_id="forged",
        symbol="TSLA",
        side=Side.SELL,
        qty=Decimal(50),
    )


async def _legs_of(engine: AsyncEngine, account: str) -> list[tuple[str, str, str]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT symbol, side, qty::text FROM legs WHERE account_id = CAST(:a AS uuid)"),
            {"a": account},
        )
        return [(str(s), str(side), str(q)) for s, side, q in rows.all()]


async def _subscribe(client: Client, token: str, master_id: str, account: str) -> None:
    body = {
        "master_id": master_id,
        "account_id": account,
        "sizing": {"mode": "multiplier", "factor": "1"},
    }
    r = await client.http.post("/v1/subscriptions", headers=client.auth(token), json=body)
    assert r.status_code == 201, r.text


async def test_a_forged_order_message_copies_only_what_postgresql_stores(
    api_app: AppFactory,
    simulator: str,
    servers: dict[str, str],
    service_env: dict[str, str],
    engine: AsyncEngine,
) -> None:
    """Master A's real order (AAPL, buy 1), re-addressed to master B (whom the victim follows)
    as TSLA, sell 50: A's follower gets AAPL buy 1, the victim gets nothing."""
    async with api_app() as app:
        client = Client(app, random_address())
        master_a, token_a = await client.user("master", copy_access="open")
        master_b, _ = await client.user("master", copy_access="open")
        _, victim_token = await client.user("follower")
        victim = await client.sim_account(victim_token, simulator)
        await _subscribe(client, victim_token, master_b, victim)
        _, follower_token = await client.user("follower")
        follower = await client.sim_account(follower_token, simulator)
        await _subscribe(client, follower_token, master_a, follower)
        order_id = await _order(client, token_a, await client.sim_account(token_a, simulator))
        settings = settings_for(servers, service_env, simulator)
        async for replicator in _replicator(settings):
            await replicator.replicate(_forged(order_id, master_b, victim), None)
            for unknown in (str(uuid.uuid4()), "not-an-order-id"):
                await replicator.replicate(_forged(unknown, master_b, victim), None)

            copied = await eventually(lambda: _legs_of(engine, follower))
            assert [(s, side, q.rstrip("0").rstrip(".")) for s, side, q in copied] == [
                ("AAPL", "buy", "1")
            ]
            assert await _legs_of(engine, victim) == []
