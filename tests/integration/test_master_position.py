"""The master's position before its order, as planning reads it (services/app/snapshots.py).

Without followers there are no copies to size: the master's broker is not asked for its
positions (an exit is told from an entry only to size copies), a broker that cannot answer does
not hold the master's own order, and an order the master placed at the broker still drops the
cached positions (its fills are in them now).

An order the master placed directly at its broker: the position before it is the broker's
position now less that order's fills, whether the order carries a client id or not (a Kite
order placed without a tag is found by its broker order id). Read after the order, a position
would already hold its fills, and a master selling everything would look flat: its exit would
be copied as an entry. Without the order the position is unavailable and the order is held."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import redis.asyncio as aioredis

from replication.errors import NotFound
from replication.model import BrokerOrder, Position
from replication.plan import master_reduces
from replication.state import LegStatus
from schemas.common import Side
from schemas.messages import OrderMessage, PlanContext
from services.app.snapshots import Snapshots
from services.infra.positions import MasterPositions
from tests.builders import order_message


class DownBroker:
    """A master broker whose positions endpoint fails; counts the asks (a fake, not a mock)."""

    def __init__(self) -> None:
        self.asked = 0

    async def positions(self) -> list[Position]:
        self.asked += 1
        raise ConnectionError("the broker is having a bad minute")


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


def _sell(account_id: str, **fields: Any) -> OrderMessage:
    return order_message(master_id="m", account_id=account_id, side=Side.SELL, **fields)


def _sale(account_id: str) -> OrderMessage:
    """SoldOut's sale, as the poller records it."""
    return _sell(
        account_id,
        client_order_id="broker:kite-240001",
        qty=Decimal(5),
        origin="broker",
        broker_client_order_id=None,
    )


async def _plan(
    snapshots: Snapshots, order: OrderMessage, broker: object, **options: Any
) -> PlanContext:
    return await snapshots.master(
        order,
        broker,  # type: ignore[arg-type]
        (False, False),
        {},
        set(),
        datetime.now(UTC),
        date.today(),
        **options,
    )


async def test_no_followers_no_position_read_and_no_hold(redis: aioredis.Redis) -> None:
    snapshots = Snapshots(redis, 1.0, 5.0, MasterPositions(redis, 5.0))
    broker = DownBroker()
    alone = await _plan(snapshots, _sell(f"a-{uuid.uuid4().hex}"), broker, copies=False)
    assert broker.asked == 0
    assert alone.master_position is None and not alone.master_position_unavailable
    # With followers the same broker failure holds the order: an exit must not be copied as an
    # entry.
    copied = await _plan(snapshots, _sell(f"a-{uuid.uuid4().hex}"), broker, copies=True)
    assert broker.asked == 1 and copied.master_position_unavailable


async def test_an_order_placed_at_the_broker_still_drops_the_cached_positions(
    redis: aioredis.Redis,
) -> None:
    positions = MasterPositions(redis, 60.0)
    account = f"a-{uuid.uuid4().hex}"
    peeked = await positions.peek(account)
    assert peeked is not None
    assert await positions.store(account, peeked[0], {"AAPL": Decimal(5)})
    snapshots = Snapshots(redis, 1.0, 5.0, positions)
    await _plan(snapshots, _sell(account, origin="broker"), DownBroker(), copies=False)
    assert await positions.peek(account) == (str(int(peeked[0]) + 1), None)


async def test_an_untagged_broker_order_is_found_by_its_broker_id(redis: aioredis.Redis) -> None:
    positions = MasterPositions(redis, 60.0)
    account = f"a-{uuid.uuid4().hex}"
    # A cached read from after the sale (flat) must not be used for it.
    peeked = await positions.peek(account)
    assert peeked is not None
    assert await positions.store(account, peeked[0], {"AAPL": Decimal(0)})
    broker = SoldOut(listed=True)
    order = _sale(account)
    context = await _plan(
        Snapshots(redis, 1.0, 5.0, positions),
        order,
        broker,
        position_cache_ok=True,
        broker_order_id="kite-240001",
    )
    assert context.master_position == Decimal(5)  # held 5 before selling 5
    assert master_reduces(order, Decimal(5))  # so the followers' copies close, not open
    assert broker.asked_after == [order.created_at - timedelta(days=1)]
    assert (await positions.peek(account) or ("", None))[1] is None  # the cache dropped


async def test_an_order_its_broker_does_not_list_holds_the_copies(redis: aioredis.Redis) -> None:
    snapshots = Snapshots(redis, 1.0, 5.0, MasterPositions(redis, 60.0))
    context = await _plan(
        snapshots,
        _sale(f"a-{uuid.uuid4().hex}"),
        SoldOut(listed=False),
        position_cache_ok=True,
        broker_order_id="kite-240001",
    )
    assert context.master_position is None and context.master_position_unavailable
