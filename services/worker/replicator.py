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
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.client import JetStreamContext
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from replication.model import MASTER_ACTION, FollowerTarget
from replication.state import TERMINAL, LegStatus
from schemas.messages import (
    ORDERS_STREAM,
    SHARDS_STREAM,
    OrderMessage,
    OrderPlan,
    PlanContext,
    ShardMessage,
)
from services.app.planning import Planner
from services.app.recording import PlanLost, Recorder
from services.app.sending import Sender
from services.app.settling import Settler
from services.app.snapshots import Snapshot, Snapshots
from services.app.targets import TargetCache, TargetSet, TargetSets, broker_for_row
from services.infra import bus
from services.infra.brokerage import BrokerFactory
from services.infra.crypto import CredentialCipher
from services.infra.db.repositories.legs import LegOutcome, list_copies_by_ids, settle_legs
from services.infra.db.repositories.orders import order_state
from services.infra.db.repositories.subscriptions import load_targets
from services.infra.logs import log_context
from services.infra.metrics import FANOUT, FIRST_LEG
from services.infra.positions import MasterPositions
from services.infra.settings import Settings
from services.infra.wiring import runtime, serve, stop_on_signals

log = logging.getLogger("copytrade.replicator")
Handler = Callable[[Msg], Coroutine[Any, Any, None]]
M = TypeVar("M", bound=BaseModel)
_FINAL = frozenset(status.value for status in TERMINAL)


@dataclass(frozen=True)
class _Shard:
    """One shard of a planned order, as this worker runs it."""

    order: OrderMessage
    index: int
    shards: int
    context: PlanContext
    master_row: dict[str, Any] | None  # only with shard 0 of an order placed through the API
    fix_plan: str | None  # the plan to store with the first batch, when this worker made it


@dataclass
class _Sent:
    """What recording and sending a shard produced, for settling it."""

    batches: int
    legs: int = 0
    skipped: list[str] = field(default_factory=list)
    outcomes: list[LegOutcome] = field(default_factory=list)
    first_answer: list[float] = field(default_factory=list)


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
        self.settler = Settler(engine, nc, self.master_positions)
        self._background: set[asyncio.Task[Any]] = set()
        self.targets = TargetCache()
        self._target_sets = TargetSets()
        self.settings = settings
        self.engine = engine
        self.nc = nc
        self.js = js
        self.cipher = cipher
        self.factory = factory
        self.planner = Planner(settings, factory, cipher, snapshots)
        self.recorder = Recorder(engine, settings.leg_lease_s)
        self.sender = Sender(
            engine,
            factory,
            cipher,
            settings.leg_lease_s,
            settings.unknown_recheck_s,
            settings.max_concurrent_per_host,
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
            with log_context(order_id=order_id):
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
            state = await order_state(conn, order.order_id)
            if state is None:
                log.error("order %s is not in the database; dropping it", order.order_id)
                if message is not None:
                    await message.term()
                return
            followers = self._target_sets.get(order.master_id, state.targets_version)
            if followers is None:
                rows = await load_targets(conn, order.master_id)
                followers = self._target_sets.put(
                    order.master_id, state.targets_version, rows, self.targets
                )
        master_row = state.master_account
        if master_row is not None:
            master_row = {**master_row, "account_id": master_row["id"]}
        stored, recorded = state.plan, state.shards_recorded
        if stored is None:
            proposal = await self.planner.propose(order, state, followers, master_row)
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
                rows = await load_targets(conn, master_id, shard.account_ids)
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
        """Record and send one shard batch by batch, then settle it."""
        by_account = dict(followers.rows)
        brokers = {
            account_id: broker_for_row(self.factory, self.cipher, row)
            for account_id, row in by_account.items()
        }
        if master_row is not None:
            by_account[order.account_id] = master_row
        snapshot = await self.snapshots.followers(order, context, followers.targets, brokers)
        shard = _Shard(order, index, shards, context, master_row, fix_plan)
        sent = await self._record_and_send(
            shard, followers.targets, snapshot, by_account, on_recorded, after_first_batch
        )
        await self._settle(shard, sent)

    async def _record_and_send(
        self,
        shard: _Shard,
        targets: list[FollowerTarget],
        snapshot: Snapshot,
        by_account: dict[str, dict[str, Any]],
        on_recorded: Callable[[], Awaitable[None]],
        after_first_batch: Callable[[], None] | None,
    ) -> _Sent:
        """The first followers' orders leave while later batches are still being recorded;
        each leg is durable before it is sent."""
        order, first, size = shard.order, self.settings.first_batch, self.settings.batch_size
        batches = [targets[:first]] + [
            targets[i : i + size] for i in range(first, len(targets), size)
        ]
        sent = _Sent(batches=len(batches))
        sending: list[asyncio.Task[list[LegOutcome]]] = []
        sent_ids: list[str] = []
        renewal = asyncio.create_task(self.sender.renew_leases(sent_ids))
        try:
            for number, batch in enumerate(batches):
                mine = await self.recorder.record(
                    order,
                    batch,
                    snapshot,
                    shard.context,
                    shard.master_row if number == 0 and shard.index == 0 else None,
                    (shard.index, shard.shards) if number == len(batches) - 1 else None,
                    shard.fix_plan if number == 0 else None,
                )
                if number == 0 and after_first_batch is not None:
                    after_first_batch()
                sent.legs += len(mine)
                if any(leg.action == MASTER_ACTION for leg in mine):
                    # Before a master leg is sent: nobody may plan with a position from before it.
                    await self.master_positions.invalidate(order.account_id)
                to_send = [leg for leg in mine if leg.status is LegStatus.SUBMITTING]
                sent.skipped += [leg.leg_id for leg in mine if leg.status is LegStatus.SKIPPED]
                sent_ids.extend(leg.leg_id for leg in to_send)
                send = self.sender.send_all(to_send, by_account, sent.first_answer)
                sending.append(asyncio.create_task(send))
            await on_recorded()
            sent.outcomes = [o for batch in await asyncio.gather(*sending) for o in batch]
        finally:
            renewal.cancel()
            for task in sending:
                task.cancel()  # only matters on failure: in-doubt legs go to the sweeper
        return sent

    async def _settle(self, shard: _Shard, sent: _Sent) -> None:
        order = shard.order
        async with self.engine.begin() as conn:
            settled_rows = await settle_legs(conn, sent.outcomes)
            skipped_rows = await list_copies_by_ids(conn, sent.skipped) if sent.skipped else []
        progress = (
            await self.settler.announce(
                [*skipped_rows, *settled_rows], order.created_at, (order.order_id, order.master_id)
            )
        )[order.order_id]
        if shard.master_row is not None and any(
            r["action"] == MASTER_ACTION and r["status"] in _FINAL for r in settled_rows
        ):
            # Read the master's positions again now that its order is done, off the critical
            # path, so the next order of this master need not wait for the broker.
            self._spawn(
                self.snapshots.master_positions(
                    order.account_id,
                    broker_for_row(self.factory, self.cipher, shard.master_row),
                    use_cache=False,
                )
            )
        if sent.first_answer and shard.index == 0:
            FIRST_LEG.observe(max(0.0, sent.first_answer[0] - order.created_at.timestamp()))
        if progress["fanout_ms"] is not None:
            FANOUT.observe(progress["fanout_ms"] / 1000)
        log.info(
            "order %s shard %d/%d: %d legs in %d batches (%d sent, %d skipped), order %s",
            order.order_id,
            shard.index + 1,
            shard.shards,
            sent.legs,
            sent.batches,
            len(sent.outcomes),
            len(sent.skipped),
            progress["status"],
        )

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


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
