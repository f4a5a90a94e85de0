"""Replicator worker: pull master orders from JetStream and fan them out to follower brokers.

A master order is planned once: the worker that pulls it reads the master's side (position,
reference price, equity, halts), splits the follower accounts into shards of COPYTRADE_SHARD_SIZE
and stores both on the order (the first plan stored wins: redeliveries and other workers size
against the same facts). Shard 0 is handled by that worker at once; the others go to the
ORDER_SHARDS work queue every worker pulls from, so a large fan-out uses every worker.

Per shard: follower snapshots → record the legs in batches (lock the risk rows, plan, one bulk
insert per batch) → ack → send with asyncio.gather → settle in one bulk update → publish leg
events. A leg is recorded before anything is sent, so a crash at any point leaves either no legs
(the message is redelivered) or legs in doubt that the sweeper resolves by looking them up at
the broker. Nothing here ever resends.

Nothing is silently stuck: a message that fails on its last delivery attempt (max_deliver), or
whose worker died on it (JetStream's MAX_DELIVERIES advisory), dead-letters its order (GET
/v1/orders/{id} shows `dead_lettered`; a metric counts it)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.client import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncEngine

from replication.state import TERMINAL
from schemas.messages import (
    ORDERS_STREAM,
    SHARDS_STREAM,
    OrderMessage,
    OrderPlan,
    ShardMessage,
)
from services.app.order_messages import order_message_from_row
from services.app.planning import Planner
from services.app.recording import PlanLost
from services.app.settling import Settler
from services.app.snapshots import Snapshots
from services.app.targets import TargetCache, TargetSet, TargetSets
from services.infra import bus
from services.infra.brokerage import BrokerFactory
from services.infra.crypto import CredentialCipher
from services.infra.db.fast import fast_connect
from services.infra.db.repositories.accounts import SealedAccount
from services.infra.db.repositories.orders import OrderState, order_state
from services.infra.db.repositories.subscriptions import load_targets
from services.infra.gc_hold import GcHold
from services.infra.logs import log_context
from services.infra.once import once
from services.infra.positions import MasterPositions
from services.infra.settings import Settings
from services.infra.wiring import runtime, serve, stop_on_signals
from services.worker.consuming import max_deliveries_subject, out_of_attempts, parse, pull
from services.worker.dead_letters import DeadLetters
from services.worker.redelivery import (
    HOLD_BACKOFF_CAP_S,
    HoldForSnapshot,
    past_copy_window,
    retry_later,
)
from services.worker.shard_check import is_uuid, stored_shard
from services.worker.shards import Shard, ShardRunner

log = logging.getLogger("copytrade.replicator")
_FINAL = frozenset(status.value for status in TERMINAL)
Done = Callable[[], None]


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
        self.targets = TargetCache()
        self._target_sets = TargetSets()
        self.settings = settings
        self.engine = engine
        self.nc = nc
        self.js = js
        self.cipher = cipher
        self.factory = factory
        self.planner = Planner(settings, factory, cipher, snapshots)
        self.dead_letters = DeadLetters(engine, js)
        self.shards = ShardRunner(
            settings, engine, factory, cipher, snapshots, self.master_positions, self.settler
        )
        self._in_flight: set[asyncio.Task[None]] = set()
        self.gc_hold = GcHold()
        self._coordinating = 0
        self._not_coordinating = asyncio.Event()
        self._not_coordinating.set()

    async def run(self, stop: asyncio.Event) -> None:
        orders = await self.js.pull_subscribe_bind(
            durable=bus.REPLICATOR_CONSUMER, stream=ORDERS_STREAM
        )
        shards = await self.js.pull_subscribe_bind(durable=bus.SHARD_CONSUMER, stream=SHARDS_STREAM)
        for stream, consumer in (
            (ORDERS_STREAM, bus.REPLICATOR_CONSUMER),
            (SHARDS_STREAM, bus.SHARD_CONSUMER),
        ):
            await self.nc.subscribe(
                max_deliveries_subject(stream, consumer),
                queue="dead-letters",
                cb=self.dead_letters.on_max_deliveries,
            )
        settings = self.settings
        await asyncio.gather(
            pull(
                orders,
                self.handle,
                stop,
                settings.max_orders_in_flight,
                settings.fetch_batch,
                self._in_flight,
            ),
            # One shard per pull: a worker takes a shard only when it has room for it, so the
            # shards of one order spread over the workers instead of queueing behind one; and
            # none while it is recording the first shard of an order (the latency that matters).
            pull(
                shards,
                self.handle_shard,
                stop,
                settings.max_shards_in_flight,
                1,
                self._in_flight,
                self._not_coordinating,
            ),
        )
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=self.settings.leg_lease_s)

    async def handle(self, message: Msg) -> None:
        order = await parse(OrderMessage, message)
        if order is not None:
            await self._guarded(order.order_id, self.replicate(order, message), message, True)

    async def handle_shard(self, message: Msg) -> None:
        shard = await parse(ShardMessage, message)
        if shard is not None:
            work = self.replicate_shard(shard, message)
            await self._guarded(shard.order.order_id, work, message, False)

    async def _guarded(
        self, order_id: str, work: Awaitable[None], message: Msg, whole_order: bool
    ) -> None:
        try:
            with log_context(order_id=order_id):
                await work
        except asyncio.CancelledError:
            raise
        except HoldForSnapshot as exc:
            log.warning("order %s held: %s", order_id, exc)
            await retry_later(message, self.engine, None, 0, "", HOLD_BACKOFF_CAP_S)
        except Exception as exc:
            # Not acked (or acked with legs recorded): redelivered with backoff, never dropped;
            # on the last delivery a configured limit allows, or after dead_letter_after
            # deliveries of a whole order, it is dead-lettered (the sweeper retries it later).
            log.exception("replication of order %s failed", order_id)
            reason = f"{type(exc).__name__}: {exc}"[:500]
            if out_of_attempts(message, self.settings.max_deliver):
                if await self.dead_letters.record(order_id, message.metadata.stream, reason):
                    with contextlib.suppress(Exception):
                        await message.term()
                return
            dead_letter_after = self.settings.dead_letter_after if whole_order else 0
            await retry_later(message, self.engine, order_id, dead_letter_after, reason)

    async def replicate(self, order: OrderMessage, message: Msg | None) -> None:
        """Plan a master order once, hand shards 1.. to every worker, and run shard 0 here."""
        self._coordinating += 1
        self._not_coordinating.clear()
        release = once(self._coordinated)
        resume_gc = self.gc_hold.hold()  # no young GC pause on the way to the first copies
        try:
            await self._replicate(order, message, release, resume_gc)
        finally:
            release()
            resume_gc()

    def _coordinated(self) -> None:
        """An order's shard 0 is recorded (or failed): this worker may take shards again."""
        self._coordinating -= 1
        if self._coordinating == 0:
            self._not_coordinating.set()

    async def _replicate(
        self, order: OrderMessage, message: Msg | None, release: Done, resume_gc: Done
    ) -> None:
        loaded = await self._load(order.order_id)
        if loaded is None:
            log.error("order %s is not in the database; dropping it", order.order_id)
            if message is not None:
                await message.term()
            return
        order, state, followers = loaded  # the message names an order; the row is the order
        master_row, recorded = state.master_account, state.shards_recorded
        order_plan, fresh = await self._plan(order, state, followers)
        try:
            refused, fresh, master_row = await self._master_first(
                order, state, order_plan, fresh, master_row
            )
        except PlanLost:
            await self._replicate(order, message, release, resume_gc)
            return
        if fresh is not None and order_plan.context.master_position_unavailable:
            if not past_copy_window(order):
                raise HoldForSnapshot("the master's position is unavailable")
        dispatch: asyncio.Task[None] | None = None

        def start_dispatch() -> None:
            nonlocal dispatch
            if dispatch is None:
                dispatch = asyncio.create_task(self._dispatch(order, order_plan, recorded, refused))

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
            await self.shards.run(
                Shard(
                    order, 0, len(order_plan.shards), order_plan.context, master_row, fresh, refused
                ),
                followers.only(order_plan.shards[0]),
                recorded_here,
                after_first_batch=start_dispatch,
                first_batch_answered=resume_gc,
            )
        except PlanLost:
            # Another delivery of this order stored its plan first: go again with that one.
            log.info("order %s was planned elsewhere first; using that plan", order.order_id)
            await self._replicate(order, message, release, resume_gc)
        finally:
            if dispatch is not None and not dispatch.done():
                dispatch.cancel()

    async def _plan(
        self, order: OrderMessage, state: OrderState, followers: TargetSet
    ) -> tuple[OrderPlan, str | None]:
        """The stored plan, or a fresh proposal and its JSON to store: with shard 0's first
        batch (one commit less before the first follower's order; shards 1.. are dispatched
        once it is committed), or with the master leg under copy_on = accepted."""
        if state.plan is not None:
            return OrderPlan.model_validate(state.plan), None
        proposal = await self.planner.propose(order, state, followers, state.master_account)
        return proposal, proposal.model_dump_json()

    async def _master_first(
        self,
        order: OrderMessage,
        state: OrderState,
        order_plan: OrderPlan,
        fresh: str | None,
        master_row: SealedAccount | None,
    ) -> tuple[bool, str | None, SealedAccount | None]:
        """copy_on = accepted: the master's order goes first and alone (storing the plan with
        it); returns (refused, the plan still to store, the master row for shard 0)."""
        if state.copy_on != "accepted" or master_row is None or order.origin != "api":
            return False, fresh, master_row
        await self.master_positions.invalidate(order.account_id)
        refused = await self.shards.master_first.refused(
            order, master_row, order_plan.context, fresh
        )
        return refused, None, None

    async def _load(self, order_id: str) -> tuple[OrderMessage, OrderState, TargetSet] | None:
        """The order as PostgreSQL has it (row, halts, master account), and its master's
        followers (cached per followers' version), in one round trip when nothing changed.
        A message is only a request to work on an order id: nothing else in it is trusted."""
        if not is_uuid(order_id):
            return None
        async with fast_connect(self.engine) as conn:
            state = await order_state(conn, order_id)
            if state is None or state.order.origin not in ("api", "broker"):
                return None  # unknown, or a flatten's own order (never fanned out)
            order = order_message_from_row(state.order)
            followers = self._target_sets.get(order.master_id, state.targets_version)
            if followers is None:
                rows = await load_targets(conn, order.master_id)
                followers = self._target_sets.put(
                    order.master_id, state.targets_version, rows, self.targets
                )
        return order, state, followers

    async def _dispatch(
        self, order: OrderMessage, order_plan: OrderPlan, recorded: set[int], refused: bool
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
                        master_refused=refused,
                    ),
                )
                for index, account_ids in enumerate(order_plan.shards)
                if index > 0 and index not in recorded
            )
        )

    async def replicate_shard(self, given: ShardMessage, message: Msg | None) -> None:
        """Record one shard, as PostgreSQL has it (services/worker/shard_check.py)."""
        async with fast_connect(self.engine) as conn:
            shard = await stored_shard(conn, given)
        if shard is None or shard.account_ids != given.account_ids:
            log.warning(
                "shard %s of order %s differs from the plan", given.shard, given.order.order_id
            )
        if shard is None:
            if message is not None:
                await message.term()
            return
        master_id = shard.order.master_id
        cached = (
            None
            if shard.targets_version is None
            else self._target_sets.get(master_id, shard.targets_version)
        )
        if cached is not None:
            followers = cached.only(shard.account_ids)
        else:
            async with fast_connect(self.engine) as conn:
                rows = await load_targets(conn, master_id, shard.account_ids)
            followers = TargetSet.build(-1, rows, self.targets)

        async def recorded_here() -> None:
            if message is not None:
                with contextlib.suppress(Exception):
                    await message.ack()

        await self.shards.run(
            Shard(
                shard.order,
                shard.shard,
                shard.shards,
                shard.context,
                None,
                None,
                shard.master_refused,
            ),
            followers,
            recorded_here,
        )


async def main_async(settings: Settings) -> None:
    async with runtime(settings, "replicator", settings.replicator_db_pool, max_overflow=4) as rt:
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
