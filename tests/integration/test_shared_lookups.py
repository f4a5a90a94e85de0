"""Price and instrument look-ups for sizing and caps are shared and charged to no follower
(issue 16): twenty orders on one symbol planned at once, by one replicator's Snapshots over
BudgetedBrokers with real Redis budgets, ask the broker for the last price and the instrument
once each; the follower account's budget is untouched, only the host's is spent."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import redis.asyncio as aioredis

from brokers.descriptor import RateLimits, Window
from replication.model import FollowerTarget, Instrument, Position
from schemas.copy_settings import Caps, Filters, NotionalSizing
from schemas.messages import OrderMessage
from services.app.snapshots import Snapshots, needs_reference_price
from services.infra.ratelimit import Budgets
from tests.builders import order_message


class MarketData:
    """A broker that counts what it is asked (a fake, not a mock)."""

    def __init__(self) -> None:
        self.prices = 0
        self.instruments = 0

    async def last_price(self, symbol: str) -> Decimal:
        self.prices += 1
        await asyncio.sleep(0.05)
        return Decimal("187.5")

    async def instrument(self, symbol: str) -> Instrument:
        self.instruments += 1
        await asyncio.sleep(0.05)
        return Instrument(symbol, Decimal("1"), Decimal("1"), Decimal("0"))

    async def positions(self) -> list[Position]:
        return []


def _order(n: int) -> OrderMessage:
    return order_message(master_id="m", account_id="master-account", client_order_id=f"c{n}")


async def test_twenty_plans_ask_once_and_charge_no_follower(servers: dict[str, str]) -> None:
    redis = aioredis.from_url(servers["redis"])
    tag = uuid.uuid4().hex
    try:
        limits = RateLimits(per_account=Window(200, 60), per_host=Window(1000, 60))
        budgets = Budgets(redis, 5.0, {"sim": limits})
        inner = MarketData()
        master = budgets.wrap(inner, "sim", f"master-{tag}", f"host-{tag}")  # type: ignore[arg-type]
        follower = budgets.wrap(inner, "sim", f"follower-{tag}", f"host-{tag}")  # type: ignore[arg-type]
        target = FollowerTarget(
            subscription_id="s",
            follower_id="f",
            account_id=f"follower-{tag}",
            broker="sim",
            sizing=NotionalSizing(mode="notional", amount=Decimal(1000)),
            caps=Caps(),
            filters=Filters(),
        )
        snapshots = Snapshots(redis, 2.0, 5.0)
        contexts = await asyncio.gather(
            *(
                snapshots.master(
                    _order(n),
                    master,
                    (False, needs_reference_price(target)),
                    {"sim": follower},
                    set(),
                    datetime.now(UTC),
                    date.today(),
                    master_broker_name="sim",
                )
                for n in range(20)
            )
        )
        assert {c.reference_price for c in contexts} == {Decimal("187.5")}
        assert inner.prices == 1, inner.prices  # one look-up for twenty plans
        assert inner.instruments <= 1, inner.instruments  # once, or none if Redis had it
        assert await redis.exists(f"copytrade:budget:account:follower-{tag}") == 0
        assert await redis.exists(f"copytrade:budget:host:host-{tag}") == 1
    finally:
        await redis.aclose()
