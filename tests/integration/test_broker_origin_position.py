"""An order the master placed directly at its broker: the position before it is the broker's
position now less that order's fills, whether the order carries a client id or not (a Kite
order placed without a tag is found by its broker order id). Read after the order, a position
would already hold its fills, and a master selling everything would look flat: its exit would
be copied as an entry. Without the order the position is unavailable and the order is held."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import redis.asyncio as aioredis

from replication.errors import NotFound
from replication.model import BrokerOrder, Position
from replication.plan import master_reduces
from replication.state import LegStatus
from schemas.common import OrderType, Side, TimeInForce
from schemas.messages import OrderMessage, PlanContext
from services.app.snapshots import Snapshots
from services.infra.positions import MasterPositions


class SoldOut:
    """A master account that held 5 AAPL and sold all 5 at the broker (a fake, not a mock):
    its positions already show it flat; its order list has the sale, without a client id."""

    def __init__(self, listed: bool) -> None:
        self.listed = listed
        self.asked_after: list[datetime | None] = []

    async def positions(self) -> list[Position]:
        return [Position("AAPL", Decimal(0), Decimal(0))]

    async def list_orders(self, after: datetime | None = None) -> list[BrokerOrder]:
        self.asked_after.append(after)
        other = BrokerOrder("other", "", LegStatus.FILLED, "COMPLETE", Decimal(3))
        sale = BrokerOrder("kite-240001", "", LegStatus.FILLED, "COMPLETE", Decimal(5))
        return [other, sale] if self.listed else [other]

    async def get_order_by_client_id(self, client_order_id: str, symbol: str) -> BrokerOrder:
        raise NotFound(client_order_id)


def _sale(account_id: str) -> OrderMessage:
    return OrderMessage(
        order_id=str(uuid.uuid4()),
        master_id="m",
        account_id=account_id,
        client_order_id="broker:kite-240001",
        symbol="AAPL",
        side=Side.SELL,
        qty=Decimal(5),
        type=OrderType.MARKET,
        time_in_force=TimeInForce.DAY,
        created_at=datetime.now(UTC),
        origin="broker",
        broker_client_order_id=None,
    )


async def _plan(snapshots: Snapshots, order: OrderMessage, broker: SoldOut) -> PlanContext:
    return await snapshots.master(
        order,
        broker,  # type: ignore[arg-type]
        (False, False),
        {},
        set(),
        datetime.now(UTC),
        date.today(),
        position_cache_ok=True,
        master_broker_name="kite",
        broker_order_id="kite-240001",
    )


async def test_an_untagged_broker_order_is_found_by_its_broker_id(
    servers: dict[str, str],
) -> None:
    redis = aioredis.from_url(servers["redis"])
    try:
        positions = MasterPositions(redis, 60.0)
        account = f"a-{uuid.uuid4().hex}"
        # A cached read from after the sale (flat) must not be used for it.
        peeked = await positions.peek(account)
        assert peeked is not None
        assert await positions.store(account, peeked[0], {"AAPL": Decimal(0)})
        broker = SoldOut(listed=True)
        order = _sale(account)
        context = await _plan(Snapshots(redis, 1.0, 5.0, positions), order, broker)
        assert context.master_position == Decimal(5)  # held 5 before selling 5
        assert master_reduces(order, Decimal(5))  # so the followers' copies close, not open
        assert broker.asked_after == [order.created_at - timedelta(days=1)]
        assert (await positions.peek(account) or ("", None))[1] is None  # the cache dropped
    finally:
        await redis.aclose()


async def test_an_order_its_broker_does_not_list_holds_the_copies(
    servers: dict[str, str],
) -> None:
    redis = aioredis.from_url(servers["redis"])
    try:
        snapshots = Snapshots(redis, 1.0, 5.0, MasterPositions(redis, 60.0))
        context = await _plan(snapshots, _sale(f"a-{uuid.uuid4().hex}"), SoldOut(listed=False))
        assert context.master_position is None and context.master_position_unavailable
    finally:
        await redis.aclose()
