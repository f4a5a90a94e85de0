"""A master order with no followers has no copies to size: planning does not ask the master's
broker for its positions (an exit is told from an entry only to size copies), and a broker that
cannot answer does not hold the master's own order. An order the master placed at the broker
still drops the cached positions: its fills are in them now."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import redis.asyncio as aioredis

from replication.model import Position
from schemas.common import OrderType, Side, TimeInForce
from schemas.messages import OrderMessage, PlanContext
from services.app.snapshots import Snapshots
from services.infra.positions import MasterPositions


class DownBroker:
    """A master broker whose positions endpoint fails; counts the asks (a fake, not a mock)."""

    def __init__(self) -> None:
        self.asked = 0

    async def positions(self) -> list[Position]:
        self.asked += 1
        raise ConnectionError("the broker is having a bad minute")


def _order(account_id: str, origin: str = "api") -> OrderMessage:
    return OrderMessage(
        order_id=str(uuid.uuid4()),
        master_id="m",
        account_id=account_id,
        client_order_id=uuid.uuid4().hex,
        symbol="AAPL",
        side=Side.SELL,
        qty=Decimal(1),
        type=OrderType.MARKET,
        time_in_force=TimeInForce.DAY,
        created_at=datetime.now(UTC),
        origin=origin,
    )


async def _plan(
    snapshots: Snapshots, order: OrderMessage, broker: DownBroker, copies: bool
) -> PlanContext:
    return await snapshots.master(
        order,
        broker,  # type: ignore[arg-type]
        (False, False),
        {},
        set(),
        datetime.now(UTC),
        date.today(),
        master_broker_name="sim",
        copies=copies,
    )


async def test_no_followers_no_position_read_and_no_hold(servers: dict[str, str]) -> None:
    redis = aioredis.from_url(servers["redis"])
    try:
        snapshots = Snapshots(redis, 1.0, 5.0, MasterPositions(redis, 5.0))
        broker = DownBroker()
        alone = await _plan(snapshots, _order(f"a-{uuid.uuid4().hex}"), broker, copies=False)
        assert broker.asked == 0
        assert alone.master_position is None and not alone.master_position_unavailable
        # With followers the same broker failure holds the order: an exit must not be copied
        # as an entry.
        copied = await _plan(snapshots, _order(f"a-{uuid.uuid4().hex}"), broker, copies=True)
        assert broker.asked == 1 and copied.master_position_unavailable
    finally:
        await redis.aclose()


async def test_an_order_placed_at_the_broker_still_drops_the_cached_positions(
    servers: dict[str, str],
) -> None:
    redis = aioredis.from_url(servers["redis"])
    try:
        positions = MasterPositions(redis, 60.0)
        account = f"a-{uuid.uuid4().hex}"
        peeked = await positions.peek(account)
        assert peeked is not None
        assert await positions.store(account, peeked[0], {"AAPL": Decimal(5)})
        snapshots = Snapshots(redis, 1.0, 5.0, positions)
        await _plan(snapshots, _order(account, origin="broker"), DownBroker(), copies=False)
        assert await positions.peek(account) == (str(int(peeked[0]) + 1), None)
    finally:
        await redis.aclose()
