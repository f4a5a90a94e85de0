"""Replicator worker: pull master orders from JetStream and fan them out to follower brokers.

A master order is planned once: the worker that pulls it reads the master's side (position,
reference price, equity, halts), splits the follower accounts into shards of
COPYTRADE_SHARD_SIZE and stores both on the order (the first plan stored wins, so redeliveries and
other workers size against the same facts). Shard 0 is handled by that worker at once; the
others go to the ORDER_SHARDS work queue that every worker pulls from, so a large fan-out uses
every worker.

Per shard: follower snapshots → record the legs in batches (lock the risk rows, plan, one bulk
insert per batch) → ack → send with asyncio.gather → settle in one bulk update → publish leg
events. A leg is recorded before anything is sent, so a crash at any point leaves either no legs
(the message is redelivered) or legs in doubt that the sweeper resolves by looking them up at
the broker. Nothing here ever resends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict, defaultdict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.client import JetStreamContext
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from replication.model import (
    MASTER_ACTION,
    ZERO,
    FollowerState,
    FollowerTarget,
    Instrument,
    PlannedLeg,
)
from replication.plan import master_leg, plan
from replication.state import TERMINAL, LegStatus, transition
from schemas.messages import (
    ORDERS_STREAM,
    SHARDS_STREAM,
    SWEEP_NOW_SUBJECT,
    OrderMessage,
    OrderPlan,
    PlanContext,
    ShardMessage,
)
from services.app.events import publish_leg_events, publish_order_event
from services.app.sending import place_once, request_from_leg
from services.app.snapshots import Snapshot, Snapshots
from services.app.targets import TargetCache, broker_for_row
from services.infra import bus
from services.infra.brokerage import BrokerFactory, broker_day
from services.infra.crypto import CredentialCipher
from services.infra.db import repositories as repo
from services.infra.metrics import FANOUT, FIRST_LEG, LEGS
from services.infra.positions import MasterPositions
from services.infra.settings import Settings
from services.infra.wiring import runtime, serve, stop_on_signals

log = logging.getLogger("copytrade.replicator")
Handler = Callable[[Msg], Coroutine[Any, Any, None]]
M = TypeVar("M", bound=BaseModel)
_FINAL = frozenset(status.value for status in TERMINAL)


class PlanLost(Exception):
    """Another delivery of the order stored a different plan first."""


@dataclass(frozen=True)
class TargetSet:
    """A master's followers as the planner sees them: one target per account (the first
    subscription by id), in account order, with the row the sender needs."""

    version: int
    targets: list[FollowerTarget]
    rows: dict[str, dict[str, Any]]  # by account id

    @classmethod
    def build(cls, version: int, rows: list[dict[str, Any]], cache: TargetCache) -> TargetSet:
        targets = _one_per_account([cache.target(row) for row in rows])
        chosen = {t.subscription_id for t in targets}
        return cls(
            version,
            targets,
            {str(row["account_id"]): row for row in rows if str(row["subscription_id"]) in chosen},
        )

    def only(self, account_ids: list[str]) -> TargetSet:
        wanted = set(account_ids)
        return TargetSet(
            self.version,
            [t for t in self.targets if t.account_id in wanted],
            {a: row for a, row in self.rows.items() if a in wanted},
        )


class TargetSets:
    """Each master's TargetSet, kept while the database's version for that master is unchanged
    (the version is bumped in the same transaction as any change, by triggers), so an order
    reads no subscription rows at all when nothing changed. Bounded, least recently used out."""

    def __init__(self, capacity: int = 64) -> None:
        self._capacity = capacity
        self._sets: OrderedDict[str, TargetSet] = OrderedDict()

    def get(self, master_id: str, version: int) -> TargetSet | None:
        found = self._sets.get(master_id)
        if found is None or found.version != version:
            return None
        self._sets.move_to_end(master_id)
        return found

    def put(
        self, master_id: str, version: int, rows: list[dict[str, Any]], cache: TargetCache
    ) -> TargetSet:
        built = TargetSet.build(version, rows, cache)
        self._sets[master_id] = built
        self._sets.move_to_end(master_id)
        while len(self._sets) > self._capacity:
            self._sets.popitem(last=False)
        return built


class Replicator:
    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        nc: NATS,
        js: JetStreamContext,
        cipher: CredentialCipher,
        factory: BrokerFactory,
        snapshots: Snapshots,
        master_positions: MasterPositions | None = None,
    ) -> None:
        self.snapshots = snapshots
        self.master_positions = master_positions or MasterPositions(None, 0)
        self._background: set[asyncio.Task[Any]] = set()
        self.targets = TargetCache()
        self._target_sets = TargetSets()
        self.settings = settings
        self.engine = engine
        self.nc = nc
        self.js = js
        self.cipher = cipher
        self.factory = factory
        self._host_limits: dict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(settings.max_concurrent_per_host)
        )
        self._in_flight: set[asyncio.Task[None]] = set()
        self._coordinating = 0
        self._not_coordinating = asyncio.Event()
        self._not_coordinating.set()

    async def run(self, stop: asyncio.Event) -> None:
        orders = await self.js.pull_subscribe_bind(
            durable=bus.REPLICATOR_CONSUMER, stream=ORDERS_STREAM
        )
        shards = await self.js.pull_subscribe_bind(durable=bus.SHARD_CONSUMER, stream=SHARDS_STREAM)
        settings = self.settings
        await asyncio.gather(
            self._pull(
                orders, self.handle, stop, settings.max_orders_in_flight, settings.fetch_batch
            ),
            # One shard per pull: a worker takes a shard only when it has room for it, so the
            # shards of one order spread over the workers instead of queueing behind one; and
            # none while it is recording the first shard of an order (the latency that matters).
            self._pull(
                shards,
                self.handle_shard,
                stop,
                settings.max_shards_in_flight,
                1,
                self._not_coordinating,
            ),
        )
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=self.settings.leg_lease_s)

    async def _pull(
        self,
        psub: Any,
        handler: Handler,
        stop: asyncio.Event,
        limit: int,
        batch: int,
        ready: asyncio.Event | None = None,
    ) -> None:
        mine: set[asyncio.Task[None]] = set()
        while not stop.is_set():
            if ready is not None and not ready.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.5):
                        await ready.wait()
                continue
            room = limit - len(mine)
            if room <= 0:
                await asyncio.wait(mine, return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                messages = await psub.fetch(batch=min(room, batch), timeout=0.5)
            except (NatsTimeoutError, TimeoutError):
                continue
            except Exception:
                log.exception("fetch failed; retrying")
                await asyncio.sleep(0.5)
                continue
            for message in messages:
                task = asyncio.create_task(handler(message))
                for tasks in (mine, self._in_flight):
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)

    async def handle(self, message: Msg) -> None:
        order = await _parse(OrderMessage, message)
        if order is not None:
            await self._guarded(order.order_id, self.replicate(order, message))

    async def handle_shard(self, message: Msg) -> None:
        shard = await _parse(ShardMessage, message)
        if shard is not None:
            await self._guarded(shard.order.order_id, self.replicate_shard(shard, message))

    @staticmethod
    async def _guarded(order_id: str, work: Awaitable[None]) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception:
            # Not acked (or acked with legs recorded): redelivery or the sweeper finishes the job.
            log.exception("replication of order %s failed", order_id)

    async def replicate(self, order: OrderMessage, message: Msg | None) -> None:
        """Plan a master order once, hand shards 1.. to every worker, and run shard 0 here."""
        self._coordinating += 1
        self._not_coordinating.clear()
        released = False

        def release() -> None:
            """Shard 0 is recorded (or this failed): this worker may take shards again."""
            nonlocal released
            if released:
                return
            released = True
            self._coordinating -= 1
            if self._coordinating == 0:
                self._not_coordinating.set()

        try:
            await self._replicate(order, message, release)
        finally:
            release()

    async def _replicate(
        self, order: OrderMessage, message: Msg | None, release: Callable[[], None]
    ) -> None:
        async with self.engine.connect() as conn:
            state = await repo.order_state(conn, order.order_id)
            if state is None:
                log.error("order %s is not in the database; dropping it", order.order_id)
                if message is not None:
                    await message.term()
                return
            followers = self._target_sets.get(order.master_id, state.targets_version)
            if followers is None:
                rows = await repo.load_targets(conn, order.master_id)
                followers = self._target_sets.put(
                    order.master_id, state.targets_version, rows, self.targets
                )
        master_row = state.master_account
        if master_row is not None:
            master_row = {**master_row, "account_id": master_row["id"]}
        stored, recorded = state.plan, state.shards_recorded
        if stored is None:
            targets = followers.targets
            one_per_broker: dict[str, dict[str, Any]] = {}
            for target in targets:
                one_per_broker.setdefault(target.broker, followers.rows[target.account_id])
            by_broker = {
                name: broker_for_row(self.factory, self.cipher, row)
                for name, row in one_per_broker.items()
            }
            master_broker = (
                None
                if master_row is None
                else broker_for_row(self.factory, self.cipher, master_row)
            )
            now = datetime.now(UTC)
            context = await self.snapshots.master(
                order,
                master_broker,
                targets,
                by_broker,
                state.halts,
                now,
                broker_day(master_row["broker"] if master_row else None, now),
                position_cache_ok=not state.master_busy,
            )
            ids, size = [t.account_id for t in targets], self.settings.shard_size
            proposal = OrderPlan(
                context=context,
                shards=[ids[i : i + size] for i in range(0, len(ids), size)] or [[]],
                targets_version=followers.version,
            )
            # Stored in the same transaction as shard 0's first batch (one commit less before
            # the first follower's order); shards 1.. are dispatched once it is committed.
            order_plan, fresh = proposal, proposal.model_dump_json()
        else:
            order_plan, fresh = OrderPlan.model_validate(stored), None
        dispatch: asyncio.Task[None] | None = None

        def start_dispatch() -> None:
            nonlocal dispatch
            if dispatch is None:
                dispatch = asyncio.create_task(self._dispatch(order, order_plan, recorded))

        async def recorded_here() -> None:
            release()
            start_dispatch()
            assert dispatch is not None
            await dispatch  # every shard is durable in JetStream or recorded before the ack
            if message is not None:
                with contextlib.suppress(Exception):
                    await message.ack()  # a lost ack is only a redelivery

        if fresh is None:
            start_dispatch()
        try:
            if 0 in recorded:
                await recorded_here()
                return
            await self._run_shard(
                order,
                0,
                len(order_plan.shards),
                order_plan.context,
                followers.only(order_plan.shards[0]),
                master_row,
                recorded_here,
                fix_plan=fresh,
                after_first_batch=start_dispatch,
            )
        except PlanLost:
            # Another delivery of this order stored its plan first: go again with that one.
            log.info("order %s was planned elsewhere first; using that plan", order.order_id)
            await self._replicate(order, message, release)
        finally:
            if dispatch is not None and not dispatch.done():
                dispatch.cancel()

    async def _dispatch(
        self, order: OrderMessage, order_plan: OrderPlan, recorded: set[int]
    ) -> None:
        count = len(order_plan.shards)
        await asyncio.gather(
            *(
                bus.publish_shard(
                    self.js,
                    ShardMessage(
                        order=order,
                        shard=index,
                        shards=count,
                        context=order_plan.context,
                        account_ids=account_ids,
                        targets_version=order_plan.targets_version,
                    ),
                )
                for index, account_ids in enumerate(order_plan.shards)
                if index > 0 and index not in recorded
            )
        )

    async def replicate_shard(self, shard: ShardMessage, message: Msg | None) -> None:
        master_id = shard.order.master_id
        cached = (
            None
            if shard.targets_version is None
            else self._target_sets.get(master_id, shard.targets_version)
        )
        if cached is not None:
            followers = cached.only(shard.account_ids)
        else:
            async with self.engine.connect() as conn:
                rows = await repo.load_targets(conn, master_id, shard.account_ids)
            followers = TargetSet.build(-1, rows, self.targets)

        async def recorded_here() -> None:
            if message is not None:
                with contextlib.suppress(Exception):
                    await message.ack()

        await self._run_shard(
            shard.order, shard.shard, shard.shards, shard.context, followers, None, recorded_here
        )

    async def _run_shard(
        self,
        order: OrderMessage,
        index: int,
        shards: int,
        context: PlanContext,
        followers: TargetSet,
        master_row: dict[str, Any] | None,
        on_recorded: Callable[[], Awaitable[None]],
        fix_plan: str | None = None,
        after_first_batch: Callable[[], None] | None = None,
    ) -> None:
        """Record and send one shard batch by batch: the first followers' orders leave while
        later batches are still being recorded. Each leg is still durable before it is sent."""
        by_account = dict(followers.rows)
        targets = followers.targets
        brokers = {
            account_id: broker_for_row(self.factory, self.cipher, row)
            for account_id, row in by_account.items()
        }
        if master_row is not None:
            by_account[order.account_id] = master_row
        snapshot = await self.snapshots.followers(order, context, targets, brokers)
        first, size = self.settings.first_batch, self.settings.batch_size
        batches = [targets[:first]] + [
            targets[i : i + size] for i in range(first, len(targets), size)
        ]

        first_answer: list[float] = []
        sending: list[asyncio.Task[list[repo.LegOutcome]]] = []
        sent_ids: list[str] = []
        renewal = asyncio.create_task(self._renew_leases(sent_ids))
        legs_total, skipped = 0, []
        try:
            for number, batch in enumerate(batches):
                mine = await self._record(
                    order,
                    batch,
                    snapshot,
                    context,
                    master_row if number == 0 and index == 0 else None,
                    (index, shards) if number == len(batches) - 1 else None,
                    fix_plan if number == 0 else None,
                )
                if number == 0 and after_first_batch is not None:
                    after_first_batch()
                legs_total += len(mine)
                if any(leg.action == MASTER_ACTION for leg in mine):
                    # Before a master leg is sent: nobody may plan with a position from before it.
                    await self.master_positions.invalidate(order.account_id)
                to_send = [leg for leg in mine if leg.status is LegStatus.SUBMITTING]
                skipped += [leg.leg_id for leg in mine if leg.status is LegStatus.SKIPPED]
                sent_ids.extend(leg.leg_id for leg in to_send)
                sending.append(
                    asyncio.create_task(self._send_all(to_send, by_account, first_answer))
                )
            await on_recorded()
            outcomes = [o for batch in await asyncio.gather(*sending) for o in batch]
        finally:
            renewal.cancel()
            for task in sending:
                task.cancel()  # only matters on failure: in-doubt legs go to the sweeper
        LEGS.labels("skipped").inc(len(skipped))
        async with self.engine.begin() as conn:
            settled_rows = await repo.settle_legs(conn, outcomes)
            skipped_rows = await repo.list_copies_by_ids(conn, skipped) if skipped else []
        # Read after commit: of the workers settling an order's shards, the last to read sees
        # every shard settled, so exactly the complete picture gets published.
        async with self.engine.connect() as conn:
            progress = await repo.order_progress(conn, order.order_id)
        for row in settled_rows:
            LEGS.labels(row["status"]).inc()
        if master_row is not None and any(
            r["action"] == MASTER_ACTION and r["status"] in _FINAL for r in settled_rows
        ):
            # Read the master's positions again now that its order is done, off the critical
            # path, so the next order of this master need not wait for the broker.
            self._spawn(
                self.snapshots.master_positions(
                    order.account_id,
                    broker_for_row(self.factory, self.cipher, master_row),
                    use_cache=False,
                )
            )
        if first_answer and index == 0:
            FIRST_LEG.observe(max(0.0, first_answer[0] - order.created_at.timestamp()))
        if progress["fanout_ms"] is not None:
            FANOUT.observe(progress["fanout_ms"] / 1000)
        follower_rows = [r for r in [*skipped_rows, *settled_rows] if r["action"] != "master"]
        await publish_leg_events(self.nc, follower_rows, order.created_at)
        await publish_order_event(self.nc, order.order_id, order.master_id, progress)
        if progress["cancel_requested"]:
            await self.nc.publish(SWEEP_NOW_SUBJECT, b"cancel")
        log.info(
            "order %s shard %d/%d: %d legs in %d batches (%d sent, %d skipped), order %s",
            order.order_id,
            index + 1,
            shards,
            legs_total,
            len(batches),
            len(outcomes),
            len(skipped),
            progress["status"],
        )

    async def _record(
        self,
        order: OrderMessage,
        batch: list[FollowerTarget],
        snapshot: Snapshot,
        context: PlanContext,
        master_row: dict[str, Any] | None,
        completes: tuple[int, int] | None,
        fix_plan: str | None = None,
    ) -> list[PlannedLeg]:
        """Plan and record one batch in one transaction; returns the legs this call inserted.
        `completes` = (shard, shards) on a shard's last batch: the shard is then recorded."""
        # Each account counts its day in its own broker's calendar, at the plan's fixed time.
        days = {t.account_id: broker_day(t.broker, context.planned_at) for t in batch}
        async with self.engine.begin() as conn:
            if fix_plan is not None:
                stored, _ = await repo.fix_plan(conn, order.order_id, fix_plan)
                if stored != json.loads(fix_plan):
                    raise PlanLost(order.order_id)  # rolls this batch back
            # Risk rows stay locked until the legs are recorded: caps hold across workers.
            risk = await repo.lock_risk(
                conn,
                [t.account_id for t in batch],
                days,
                order.symbol,
                [t.account_id for t in batch if t.caps.max_open_positions is not None],
            )
            targets = [
                replace(
                    target,
                    instrument=snapshot.instruments.get(target.broker, Instrument(order.symbol)),
                    state=_merge_state(
                        snapshot.states.get(target.account_id, FollowerState()),
                        risk.get(target.account_id),
                        order.symbol,
                    ),
                )
                for target in batch
            ]
            legs = plan(order, targets, context.planned_at, snapshot.context)
            if master_row is not None and order.origin == "api":
                # An order the master placed directly at its broker is already there.
                legs.append(master_leg(order, master_row["broker"]))
            to_record = [
                replace(leg, status=transition(leg.status, LegStatus.SUBMITTING))
                if leg.status is LegStatus.PLANNED
                else leg
                for leg in legs
            ]
            inserted = set(
                await repo.insert_legs(conn, order.master_id, to_record, self.settings.leg_lease_s)
            )
            mine = [leg for leg in to_record if leg.leg_id in inserted]
            await repo.spend_risk(conn, mine, days)
            if completes is not None:
                await repo.shard_recorded(conn, order.order_id, *completes)
        return mine

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _send_all(
        self,
        legs: list[PlannedLeg],
        by_account: dict[str, dict[str, Any]],
        first_answer: list[float],
    ) -> list[repo.LegOutcome]:
        return list(
            await asyncio.gather(
                *(self._send(leg, by_account[leg.account_id], first_answer) for leg in legs)
            )
        )

    async def _renew_leases(self, leg_ids: list[str]) -> None:
        """While this worker sends, keep its legs' leases fresh (a third of the lease apart)."""
        interval = self.settings.leg_lease_s / 3
        while True:
            await asyncio.sleep(interval)
            if not leg_ids:  # shards still being recorded append to this list
                continue
            try:
                async with self.engine.begin() as conn:
                    await repo.renew_leases(conn, leg_ids, self.settings.leg_lease_s)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("lease renewal failed", exc_info=True)

    async def _send(
        self, leg: PlannedLeg, row: dict[str, Any], first_answer: list[float]
    ) -> repo.LegOutcome:
        broker = broker_for_row(self.factory, self.cipher, row)
        async with self._host_limits[leg.broker]:
            outcome = await place_once(
                broker,
                leg.broker,
                leg.leg_id,
                request_from_leg(leg),
                deadline_s=self.settings.leg_lease_s * 0.5,
                recheck_s=self.settings.unknown_recheck_s,
            )
        if not first_answer:
            first_answer.append(time.time())
        return outcome


def _one_per_account(targets: list[FollowerTarget]) -> list[FollowerTarget]:
    """One target per follower account (the first subscription by id), in account order, so
    shards never split an account and every worker shards the same way."""
    chosen: dict[str, FollowerTarget] = {}
    for target in sorted(targets, key=lambda t: (t.account_id, t.subscription_id)):
        chosen.setdefault(target.account_id, target)
    return list(chosen.values())


def _merge_state(snapshot: FollowerState, risk: repo.RiskRow | None, symbol: str) -> FollowerState:
    """Broker snapshot + the locked ledger and day counter of one follower account."""
    if risk is None:
        return snapshot
    ledger_symbols = frozenset(s for s, qty in risk.positions.items() if qty != 0)
    return replace(
        snapshot,
        copy_position=risk.positions.get(symbol, ZERO),
        open_symbols=snapshot.open_symbols | ledger_symbols,
        orders_today=risk.orders_today,
    )


async def _parse(kind: type[M], message: Msg) -> M | None:
    try:
        return kind.model_validate_json(message.data)
    except ValidationError:
        log.error("dropping malformed %s (seq %s)", kind.__name__, message.metadata.sequence.stream)
        await message.term()
        return None


async def main_async(settings: Settings) -> None:
    async with runtime(settings, "replicator", pool_size=5) as rt:
        await bus.ensure_consumer(rt.js, settings.consumer_ack_wait_s, settings.max_deliver)
        positions = MasterPositions(rt.redis, settings.master_position_max_age_s)
        snapshots = Snapshots(
            rt.redis, settings.snapshot_deadline_s, settings.equity_max_age_s, positions
        )
        replicator = Replicator(
            settings, rt.engine, rt.nc, rt.js, rt.cipher, rt.factory, snapshots, positions
        )
        log.info("replicator started")
        await replicator.run(stop_on_signals())
    log.info("replicator stopped")


if __name__ == "__main__":
    serve(main_async)
