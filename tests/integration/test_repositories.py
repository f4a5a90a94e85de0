"""Repositories against a real PostgreSQL (embedded by default)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from replication.model import FollowerTarget, MasterContext
from replication.plan import plan
from replication.state import LegStatus
from schemas.common import OrderType, Side, TimeInForce
from schemas.copy_settings import Caps, Filters, FixedSizing
from schemas.messages import OrderMessage, OrderPlan, PlanContext
from services.app.outbox import PublishedMarks
from services.app.recording import PlanLost, Recorder
from services.app.settling import settling_connection
from services.app.snapshots import Snapshot
from services.infra.db.fast import FastConnection, fast_connect
from services.infra.db.repositories.accounts import (
    SealedAccount,
    insert_account,
    set_account_halted,
)
from services.infra.db.repositories.leases import claim_in_doubt
from services.infra.db.repositories.legs import LegOutcome, insert_legs, settle_legs
from services.infra.db.repositories.orders import (
    OrderProgress,
    get_master_order_by_client_id,
    insert_master_order,
    order_progress,
    order_state,
    orders_progress,
)
from services.infra.db.repositories.plans import shard_recorded, store_plan
from services.infra.db.repositories.subscriptions import (
    insert_subscription,
    remove_subscription,
    update_subscription,
)
from services.infra.db.repositories.users import create_user
from tests.helpers import eventually


async def _order_with_followers(engine: AsyncEngine, followers: int) -> tuple[OrderMessage, list]:
    master_id, master_account = str(uuid.uuid4()), str(uuid.uuid4())
    order_id = str(uuid.uuid4())
    targets = []
    async with engine.begin() as conn:
        await create_user(conn, master_id, f"m-{master_id}@x.test", "h", "master")
        await insert_account(conn, master_account, master_id, "sim", "m", b"x")
        await insert_master_order(
            conn,
            {
                "id": order_id,
                "master_id": master_id,
                "account_id": master_account,
                "client_order_id": "c",
                "request_hash": "h",
                "symbol": "AAPL",
                "side": "buy",
                "qty": Decimal(5),
                "type": "market",
                "limit_price": None,
                "stop_price": None,
                "time_in_force": "day",
            },
        )
        for _ in range(followers):
            user_id, account_id = str(uuid.uuid4()), str(uuid.uuid4())
            await create_user(conn, user_id, f"f-{user_id}@x.test", "h", "follower")
            await insert_account(conn, account_id, user_id, "sim", "f", b"x")
            targets.append(
                FollowerTarget(
                    subscription_id=str(uuid.uuid4()),
                    follower_id=user_id,
                    account_id=account_id,
                    broker="sim",
                    sizing=FixedSizing(mode="fixed", qty=Decimal(1)),
                    caps=Caps(),
                    filters=Filters(),
                )
            )
    order = OrderMessage(
        order_id=order_id,
        master_id=master_id,
        account_id=master_account,
        client_order_id="c",
        symbol="AAPL",
        side=Side.BUY,
        qty=Decimal(5),
        type=OrderType.MARKET,
        time_in_force=TimeInForce.DAY,
        created_at=datetime.now(UTC),
    )
    return order, targets


def _submitting(legs: list) -> list:
    from dataclasses import replace

    return [replace(leg, status=LegStatus.SUBMITTING) for leg in legs]


async def test_legs_are_recorded_once_even_when_two_workers_race(engine: AsyncEngine) -> None:
    order, targets = await _order_with_followers(engine, 50)
    legs = _submitting(plan(order, targets, datetime.now(UTC)))

    async def record() -> list[str]:
        async with engine.begin() as conn:
            return await insert_legs(conn, order.master_id, legs, 10)

    first, second = await asyncio.gather(record(), record())
    assert sorted(first + second) == sorted(leg.leg_id for leg in legs)  # disjoint, complete
    async with engine.connect() as conn:
        count = (
            await conn.execute(
                text("SELECT count(*) FROM legs WHERE order_id = :o"), {"o": order.order_id}
            )
        ).scalar_one()
    assert count == 50


async def test_settle_only_touches_legs_in_doubt(engine: AsyncEngine) -> None:
    order, targets = await _order_with_followers(engine, 3)
    legs = _submitting(plan(order, targets, datetime.now(UTC)))
    async with engine.begin() as conn:
        await insert_legs(conn, order.master_id, legs, 10)
        rows = await settle_legs(
            conn,
            [
                LegOutcome(
                    legs[0].leg_id,
                    LegStatus.FILLED,
                    broker_order_id="b0",
                    filled_qty=Decimal(1),
                    filled_avg_price=Decimal(100),
                ),
                LegOutcome(
                    legs[1].leg_id,
                    LegStatus.UNKNOWN,
                    reason="in_doubt: http_500",
                    recheck_after_s=5,
                ),
            ],
        )
        assert {r.status for r in rows} == {"filled", "unknown"}
        # A late answer for an already filled leg changes nothing.
        again = await settle_legs(conn, [LegOutcome(legs[0].leg_id, LegStatus.REJECTED)])
        assert again == []
        progress = await order_progress(conn, order.order_id)
    assert progress.by_status == {"filled": 1, "unknown": 1, "submitting": 1}
    assert progress.status == "accepted" and progress.fanout_ms is None


async def test_claims_are_exclusive(engine: AsyncEngine) -> None:
    order, targets = await _order_with_followers(engine, 40)
    legs = _submitting(plan(order, targets, datetime.now(UTC)))
    async with engine.begin() as conn:
        await insert_legs(conn, order.master_id, legs, 0.001)

    async def leases_expired() -> bool:
        async with engine.connect() as conn:
            return bool(
                (
                    await conn.execute(
                        text(
                            "SELECT bool_and(lease_expires_at < now()) FROM legs "
                            "WHERE order_id = :o"
                        ),
                        {"o": order.order_id},
                    )
                ).scalar_one()
            )

    await eventually(leases_expired, timeout_s=5, message="the 1 ms leases did not run out")

    async def claim() -> list[str]:
        async with engine.begin() as conn:
            return [
                str(r.id)
                for r in await claim_in_doubt(conn, 1000, 30)
                if str(r.order_id) == order.order_id
            ]

    results = await asyncio.gather(*(claim() for _ in range(4)))
    claimed = [leg for result in results for leg in result]
    assert len(claimed) == len(set(claimed)) == 40
    async with engine.begin() as conn:
        assert [
            r for r in await claim_in_doubt(conn, 1000, 30) if str(r.order_id) == order.order_id
        ] == []


async def test_master_order_idempotency_key(engine: AsyncEngine) -> None:
    order, _ = await _order_with_followers(engine, 0)
    async with engine.begin() as conn:
        again = await insert_master_order(
            conn,
            {
                "id": str(uuid.uuid4()),
                "master_id": order.master_id,
                "account_id": order.account_id,
                "client_order_id": "c",
                "request_hash": "other",
                "symbol": "AAPL",
                "side": "buy",
                "qty": Decimal(5),
                "type": "market",
                "limit_price": None,
                "stop_price": None,
                "time_in_force": "day",
            },
        )
        assert again is None
        existing = await get_master_order_by_client_id(conn, order.master_id, "c")
    assert existing is not None and str(existing.id) == order.order_id


async def test_database_rejects_a_second_leg_for_the_same_follower_and_action(
    engine: AsyncEngine,
) -> None:
    """Invariant 1 is enforced by PostgreSQL itself, not only by our code."""
    order, targets = await _order_with_followers(engine, 1)
    [leg] = _submitting(plan(order, targets, datetime.now(UTC)))
    async with engine.begin() as conn:
        await insert_legs(conn, order.master_id, [leg], 10)
    from dataclasses import replace

    from sqlalchemy.exc import IntegrityError

    clone = replace(leg, leg_id=str(uuid.uuid4()))
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO legs (id, order_id, master_id, subscription_id, follower_id, "
                    "account_id, action, client_order_id, symbol, side, qty, type, time_in_force, "
                    "status) VALUES (:id, :o, :m, :s, :f, :a, 'open', 'other', 'AAPL', 'buy', 1, "
                    "'market', 'day', 'submitting')"
                ),
                {
                    "id": clone.leg_id,
                    "o": leg.order_id,
                    "m": order.master_id,
                    "s": leg.subscription_id,
                    "f": leg.follower_id,
                    "a": leg.account_id,
                },
            )
        raise AssertionError("a duplicate leg was accepted")
    except IntegrityError as exc:
        assert "legs_order_id_account_id_action_key" in str(exc)


async def test_the_first_stored_plan_wins_and_shards_complete_the_plan(
    engine: AsyncEngine,
) -> None:
    order, _ = await _order_with_followers(engine, 0)
    now = datetime.now(UTC)

    def proposal(position: str, shards: list[list[str]]) -> str:
        context = PlanContext(
            planned_at=now, trading_day=now.date(), master_position=Decimal(position)
        )
        return OrderPlan(context=context, shards=shards).model_dump_json()

    first, second = proposal("-3.5", [["a"], ["b"], ["c"]]), proposal("7", [["a", "b", "c"]])

    async def fix(plan_json: str) -> tuple[bool, set[int]]:
        async with engine.begin() as conn:
            return await store_plan(conn, order.order_id, plan_json)

    assert await fix(first) == (True, set())
    assert await fix(second) == (False, set())  # a redelivery that saw different facts lost
    # The same plan again (its JSON keys in another order) is the stored one: not a loser.
    assert await fix(json.dumps(json.loads(first), sort_keys=True)) == (True, set())
    async with engine.connect() as conn:
        stored = await order_state(conn, order.order_id)
    assert stored is not None
    kept = OrderPlan.model_validate(stored.plan)
    assert kept.context.master_position == Decimal("-3.5") and len(kept.shards) == 3

    async def planned() -> bool:
        async with engine.connect() as conn:
            summary = await order_progress(conn, order.order_id)
        return bool(summary.status != "accepted")

    for shard in (2, 0, 2):  # out of order, and shard 2 twice (a redelivered shard)
        async with engine.begin() as conn:
            await shard_recorded(conn, order.order_id, shard, 3)
        assert not await planned()
    async with engine.begin() as conn:
        await shard_recorded(conn, order.order_id, 1, 3)
    assert await planned()
    async with engine.connect() as conn:
        state = await order_state(conn, order.order_id)
    assert state is not None and state.shards_recorded == {0, 1, 2}


async def test_published_marks_are_batched_and_flushed_on_close(engine: AsyncEngine) -> None:
    orders = [(await _order_with_followers(engine, 0))[0] for _ in range(3)]
    marks = PublishedMarks(engine, interval_s=0.05)
    marks.start()

    async def published() -> list[bool]:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text("SELECT published_at IS NOT NULL FROM master_orders WHERE id = ANY(:ids)"),
                    {"ids": [uuid.UUID(o.order_id) for o in orders]},
                )
            ).all()
        return [bool(r[0]) for r in rows]

    marks.add(orders[0].order_id)
    marks.add(orders[1].order_id)
    assert await published() == [False, False, False]  # not before the batch window closes

    async def first_two() -> bool:
        return sorted(await published()) == [False, True, True]

    await eventually(first_two, timeout_s=5, message="the batch was not flushed")
    marks.add(orders[2].order_id)
    await marks.close()  # shutting down flushes what is pending
    assert await published() == [True, True, True]


async def test_any_change_to_a_masters_followers_bumps_its_targets_version(
    engine: AsyncEngine,
) -> None:
    order, _ = await _order_with_followers(engine, 0)
    other, _ = await _order_with_followers(engine, 0)
    master = order.master_id
    follower, account = str(uuid.uuid4()), str(uuid.uuid4())
    subscription = str(uuid.uuid4())

    async def versions() -> tuple[int, int]:
        async with engine.connect() as conn:
            mine = await order_state(conn, order.order_id)
            theirs = await order_state(conn, other.order_id)
        assert mine is not None and theirs is not None
        return mine.targets_version, theirs.targets_version

    async def change(step: Any) -> None:
        before = await versions()
        async with engine.begin() as conn:
            await step(conn)
        after = await versions()
        assert after[0] > before[0], "the master's version did not move"
        assert after[1] == before[1], "another master's version moved"

    async with engine.begin() as conn:
        await create_user(conn, follower, f"f-{follower}@x.test", "h", "follower")
        await insert_account(conn, account, follower, "sim", "f", b"x")
    await change(
        lambda conn: insert_subscription(
            conn,
            {
                "id": subscription,
                "follower_id": follower,
                "master_id": master,
                "account_id": account,
                "sizing": {"mode": "fixed", "qty": "1"},
                "caps": {},
                "filters": {},
                "paused": False,
            },
        )
    )
    await change(lambda conn: update_subscription(conn, subscription, follower, {"paused": True}))
    await change(lambda conn: set_account_halted(conn, account, follower, True))
    await change(lambda conn: remove_subscription(conn, subscription, follower))


async def test_a_first_batch_that_loses_the_plan_race_records_nothing(engine: AsyncEngine) -> None:

    order, targets = await _order_with_followers(engine, 3)
    now = datetime.now(UTC)
    shards = [[t.account_id for t in targets]]

    def plan_json(position: str) -> str:
        context = PlanContext(
            planned_at=now, trading_day=now.date(), master_position=Decimal(position)
        )
        return OrderPlan(context=context, shards=shards).model_dump_json()

    theirs, ours = plan_json("5"), plan_json("0")
    async with engine.begin() as conn:
        await store_plan(conn, order.order_id, theirs)  # another delivery was first
    recorder = Recorder(engine, lease_s=10)

    async def legs() -> int:
        async with engine.connect() as conn:
            return int(
                (
                    await conn.execute(
                        text("SELECT count(*) FROM legs WHERE order_id = :o"),
                        {"o": order.order_id},
                    )
                ).scalar_one()
            )

    snapshot = Snapshot(context=MasterContext())
    ours_context = OrderPlan.model_validate_json(ours).context
    with pytest.raises(PlanLost):
        await recorder.record(order, targets, snapshot, ours_context, None, (0, 1), ours)
    assert await legs() == 0  # the whole batch rolled back
    async with engine.connect() as conn:
        state = await order_state(conn, order.order_id)
    assert state is not None and state.shards_recorded == set()

    theirs_context = OrderPlan.model_validate_json(theirs).context
    mine = await recorder.record(order, targets, snapshot, theirs_context, None, (0, 1), theirs)
    assert len(mine) == 3 and await legs() == 3
    # The winner's one statement also counted its shard, the only one: the order is planned.
    async with engine.connect() as conn:
        state = await order_state(conn, order.order_id)
        progress = await order_progress(conn, order.order_id)
    assert state is not None and state.shards_recorded == {0}
    assert progress.status != "accepted"


async def test_a_plan_stored_with_its_shard_counts_it_once_and_plans_at_the_last(
    engine: AsyncEngine,
) -> None:
    order, _ = await _order_with_followers(engine, 0)
    now = datetime.now(UTC)
    context = PlanContext(planned_at=now, trading_day=now.date(), master_position=Decimal(0))
    plan_json = OrderPlan(context=context, shards=[["a"], ["b"]]).model_dump_json()

    async def planned_at() -> Any:
        async with engine.connect() as conn:
            return (
                await conn.execute(
                    text("SELECT planned_at, shards_recorded FROM master_orders WHERE id = :o"),
                    {"o": order.order_id},
                )
            ).one()

    async with engine.begin() as conn:
        await shard_recorded(conn, order.order_id, 1, 2)  # shard 1 was recorded first
    for _ in range(2):  # shard 0 with the plan, then a redelivery of it
        async with engine.begin() as conn:
            assert await store_plan(conn, order.order_id, plan_json, (0, 2)) == (True, {0, 1})
        when, recorded = await planned_at()
        assert when is not None and sorted(recorded) == [0, 1]
    first_planned = when
    async with engine.begin() as conn:
        await shard_recorded(conn, order.order_id, 0, 2)  # counted already: nothing moves
    assert await planned_at() == (first_planned, [1, 0])


class _RoundTrips:
    """Statements sent through FastConnection plus BEGIN/COMMIT/ROLLBACK sent on its driver."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: list[str] = []
        execute, raw = FastConnection.execute, asyncpg.Connection.execute

        async def counted(conn: FastConnection, statement: Any, *args: Any) -> Any:
            self.sent.append(str(statement).split(" ", 1)[0])
            return await execute(conn, statement, *args)

        async def counted_raw(conn: asyncpg.Connection, query: str, *args: Any) -> Any:
            self.sent.append(query)
            return await raw(conn, query, *args)

        monkeypatch.setattr(FastConnection, "execute", counted)
        monkeypatch.setattr(asyncpg.Connection, "execute", counted_raw)


async def test_an_order_without_followers_costs_the_worker_five_round_trips(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recording the master's own leg with the plan (BEGIN, the plan with its one shard,
    the leg, COMMIT) and settling its fill (one statement, no transaction: a fill releases
    nothing from a ledger). Was ten: the shard's count and planned_at were two more UPDATEs and
    the settle was BEGIN, UPDATE, COMMIT."""
    order, _ = await _order_with_followers(engine, 0)
    master = SealedAccount(uuid.UUID(order.account_id), "sim", b"x")
    now = datetime.now(UTC)
    context = PlanContext(planned_at=now, trading_day=now.date(), master_position=Decimal(0))
    plan_json = OrderPlan(context=context, shards=[[]]).model_dump_json()
    trips = _RoundTrips(monkeypatch)
    legs = await Recorder(engine, lease_s=10).record(
        order, [], Snapshot(context=MasterContext()), context, master, (0, 1), plan_json
    )
    assert [leg.action for leg in legs] == ["master"]
    assert trips.sent == ["BEGIN", "UPDATE", "INSERT", "COMMIT"]
    trips.sent.clear()
    filled = [LegOutcome(legs[0].leg_id, LegStatus.FILLED, filled_qty=Decimal(5))]
    async with settling_connection(engine, filled) as conn:
        rows = await settle_legs(conn, filled)
    assert [r.status for r in rows] == ["filled"] and trips.sent == ["UPDATE"]


async def test_an_outcome_that_can_release_a_ledger_settles_in_a_transaction(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rejected copy gives its reservation back in the same transaction as its move."""
    order, targets = await _order_with_followers(engine, 1)
    now = datetime.now(UTC)
    context = PlanContext(planned_at=now, trading_day=now.date(), master_position=Decimal(0))
    plan_json = OrderPlan(context=context, shards=[[targets[0].account_id]]).model_dump_json()
    legs = await Recorder(engine, lease_s=10).record(
        order, targets, Snapshot(context=MasterContext()), context, None, (0, 1), plan_json
    )
    trips = _RoundTrips(monkeypatch)
    rejected = [LegOutcome(legs[0].leg_id, LegStatus.REJECTED, reason="no")]
    async with settling_connection(engine, rejected) as conn:
        rows = await settle_legs(conn, rejected)
    assert [r.status for r in rows] == ["rejected"]
    assert trips.sent[0] == "BEGIN" and trips.sent[-1] == "COMMIT" and len(trips.sent) >= 4


async def test_progress_of_many_orders_is_each_orders_own(engine: AsyncEngine) -> None:
    """GET /v1/orders reads progress for a page of orders at once; counts never mix."""
    first, first_targets = await _order_with_followers(engine, 3)
    second, second_targets = await _order_with_followers(engine, 2)
    first_legs = _submitting(plan(first, first_targets, datetime.now(UTC)))
    second_legs = _submitting(plan(second, second_targets, datetime.now(UTC)))
    async with engine.begin() as conn:
        await insert_legs(conn, first.master_id, first_legs, 10)
        await insert_legs(conn, second.master_id, second_legs, 10)
        await settle_legs(conn, [LegOutcome(first_legs[0].leg_id, LegStatus.FILLED)])
    missing = str(uuid.uuid4())
    async with engine.connect() as conn:
        many = await orders_progress(conn, [second.order_id, first.order_id, missing])
        one = {i: await order_progress(conn, i) for i in (first.order_id, second.order_id)}
    async with fast_connect(engine) as fast:  # the settler's connection: the same answer
        assert await orders_progress(fast, [second.order_id, first.order_id, missing]) == many
    assert list(many) == [second.order_id, first.order_id, missing]
    assert many[first.order_id].by_status == {"filled": 1, "submitting": 2}
    assert many[second.order_id].by_status == {"submitting": 2}
    assert (many[first.order_id].total, many[second.order_id].total) == (3, 2)
    assert {i: many[i] for i in one} == one
    assert many[missing] == OrderProgress(
        status="accepted",
        total=0,
        by_status={},
        fanout_ms=None,
        master=None,
        cancel_requested=False,
    )
