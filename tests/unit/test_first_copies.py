"""An order's first copies leave before anything else takes the worker (issue 13, fifth pass):
the worker plans the next batch only once the first batch's copies are admitted (or refused),
and young GC collections are held off until the first batch is answered."""

from __future__ import annotations

import asyncio
import gc
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

import pytest

from brokers.descriptor import RateLimits
from replication.model import BrokerOrder, MasterContext, OrderRequest, PlannedLeg
from replication.state import LegStatus
from schemas.messages import OrderMessage, PlanContext
from services.app.sending import Admissions, Sender
from services.app.snapshots import Snapshot
from services.infra.cooldown import AccountGate
from services.infra.gc_hold import GcHold
from services.infra.ratelimit import BudgetedBroker, CircuitBreaker
from services.infra.settings import Settings
from services.worker.shards import Shard, ShardRunner
from tests.builders import order_message, planned_leg

ORDER_ID = str(uuid.uuid4())


class HeldBroker:
    """A broker whose orders are answered only when the test says so (a fake of the broker's
    servers); `log` is shared with the fake recorder, so the order of events can be read."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.answer = asyncio.Event()

    async def place_order(self, request: OrderRequest) -> BrokerOrder:
        self.log.append(f"sent {request.client_order_id}")
        await self.answer.wait()
        return BrokerOrder(
            broker_order_id=f"b-{request.client_order_id}",
            client_order_id=request.client_order_id,
            symbol=request.symbol,
            side=request.side,
            qty=request.qty,
            status=LegStatus.ACCEPTED,
            filled_qty=Decimal(0),
            broker_status="accepted",
        )


@dataclass(frozen=True)
class Row:
    account_id: uuid.UUID
    broker: str = "sim"
    credentials: bytes = b"sealed"


class Factory:
    """Every account's adapter: the held broker behind the real budget wrapper and 429 gate
    (kept in this process: no Valkey here)."""

    def __init__(self, broker: HeldBroker, closed: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.broker = broker
        self.closed = closed

    def for_sealed(self, account_id: str, broker: str, sealed: bytes, unseal: Any) -> Any:
        gate = AccountGate(None, f"gate:{account_id}")
        if account_id in self.closed:
            gate._next_at = float("inf")  # a 429 was seen: the account waits for its probe
        return BudgetedBroker(
            self.broker,  # type: ignore[arg-type]
            RateLimits(),
            None,
            None,
            CircuitBreaker(),
            gate,
        )


class Cipher:
    def decrypt(self, account_id: str, sealed: bytes) -> dict[str, Any]:
        return {}


def _leg(account_id: str, n: int) -> PlannedLeg:
    return planned_leg(order_id=ORDER_ID, account_id=account_id, client_order_id=f"c{n}")


def _sender(broker: HeldBroker, closed: set[str] = frozenset()) -> Sender:  # type: ignore[assignment]
    return Sender(
        cast(Any, None), cast(Any, Factory(broker, closed)), cast(Any, Cipher()), 15, 1, 64
    )


async def test_admissions_are_done_when_every_copy_is_sent_not_answered() -> None:
    log: list[str] = []
    broker = HeldBroker(log)
    accounts = [str(uuid.uuid4()) for _ in range(3)]
    legs = [_leg(a, n) for n, a in enumerate(accounts)]
    rows = {a: Row(uuid.UUID(a)) for a in accounts}
    admissions = Admissions(len(legs))
    sending = asyncio.create_task(_sender(broker).send_all(legs, rows, [], admissions))
    await asyncio.wait_for(admissions.done.wait(), 1)
    await asyncio.sleep(0)
    assert sorted(log) == ["sent c0", "sent c1", "sent c2"]  # on their way, none answered
    assert not sending.done()
    broker.answer.set()
    outcomes = await sending
    assert [o.status for o in outcomes] == [LegStatus.ACCEPTED] * 3


async def test_a_copy_refused_before_sending_is_counted_too() -> None:
    """An account waiting for its 429 probe refuses the copy unsent: the batch's admissions
    still complete (the worker must not wait for a copy that will not go)."""
    log: list[str] = []
    broker = HeldBroker(log)
    accounts = [str(uuid.uuid4()) for _ in range(2)]
    legs = [_leg(a, n) for n, a in enumerate(accounts)]
    rows = {a: Row(uuid.UUID(a)) for a in accounts}
    admissions = Admissions(len(legs))
    sender = _sender(broker, closed={accounts[1]})
    sending = asyncio.create_task(sender.send_all(legs, rows, [], admissions))
    await asyncio.wait_for(admissions.done.wait(), 1)
    assert log == ["sent c0"]
    broker.answer.set()
    outcomes = await sending
    assert [o.status for o in outcomes] == [LegStatus.ACCEPTED, LegStatus.RETRYING]
    assert Admissions(0).done.is_set()


class Recorder:
    """Records nothing: logs which batch it was asked for and gives its legs back."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.batches = 0

    async def record(self, order: Any, batch: list[Any], *rest: Any) -> list[PlannedLeg]:
        self.log.append(f"record {self.batches}")
        first = self.batches * 100
        self.batches += 1
        return [_leg(t.account_id, first + i) for i, t in enumerate(batch)]


@dataclass(frozen=True)
class Target:
    account_id: str


def _runner(log: list[str], broker: HeldBroker) -> ShardRunner:
    settings = Settings.from_env({"COPYTRADE_FIRST_BATCH": "2", "COPYTRADE_BATCH_SIZE": "2"})
    runner = ShardRunner(
        settings,
        cast(Any, None),
        cast(Any, Factory(broker)),
        cast(Any, Cipher()),
        cast(Any, None),
        cast(Any, None),
        cast(Any, None),
    )
    runner.recorder = cast(Any, Recorder(log))
    runner.sender = _sender(broker)
    return runner


def _order() -> OrderMessage:
    return order_message(order_id=ORDER_ID, client_order_id="c")


@pytest.mark.parametrize("index", [0, 1])
async def test_the_next_batch_is_planned_once_the_first_copies_are_on_their_way(
    index: int,
) -> None:
    """Shard 0 (an order's first copies): batch 1 is recorded only after batch 0's copies have
    gone to their broker. Other shards do not wait (their first follower is not the order's)."""
    log: list[str] = []
    broker = HeldBroker(log)
    runner = _runner(log, broker)
    accounts = [str(uuid.uuid4()) for _ in range(4)]
    rows = {a: Row(uuid.UUID(a)) for a in accounts}
    now = datetime.now(UTC)
    shard = Shard(
        _order(), index, 2, PlanContext(planned_at=now, trading_day=now.date()), None, None
    )
    recorded = asyncio.Event()

    async def on_recorded() -> None:
        recorded.set()
        broker.answer.set()

    sent = await asyncio.wait_for(
        runner._record_and_send(
            shard,
            cast(Any, [Target(a) for a in accounts]),
            Snapshot(MasterContext()),
            cast(Any, rows),
            on_recorded,
            None,
            None,
        ),
        5,
    )
    assert recorded.is_set() and len(sent.outcomes) == 4
    first_batch = log[: log.index("record 1")]
    if index == 0:
        assert first_batch == ["record 0", "sent c0", "sent c1"]
    else:
        assert first_batch == ["record 0"]  # the copies had not left yet


@pytest.fixture
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    try:
        yield
    finally:
        if not was:
            gc.disable()


async def test_gc_is_held_until_every_holder_releases(collector_on: None) -> None:
    hold = GcHold(max_s=5)
    first, second = hold.hold(), hold.hold()
    assert not gc.isenabled() and hold.holding
    first()
    first()  # idempotent: the second holder still holds
    assert not gc.isenabled()
    second()
    assert gc.isenabled() and not hold.holding


async def test_a_hold_expires(collector_on: None) -> None:
    hold = GcHold(max_s=0.02)
    release = hold.hold()
    await asyncio.sleep(0.05)
    assert gc.isenabled()  # collected again although the holder has not released
    release()
    assert gc.isenabled()


async def test_a_collector_turned_off_elsewhere_stays_off(collector_on: None) -> None:
    gc.disable()
    hold = GcHold(max_s=5)
    hold.hold()()
    assert not gc.isenabled()  # not ours to turn on
