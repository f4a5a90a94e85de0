"""Replicator worker: pull master orders from JetStream and fan them out to follower brokers.

Per message: plan (pure) → record the legs in one bulk insert → ack → send with asyncio.gather
→ settle in one bulk update → publish leg events. A leg is recorded before anything is sent, so
a crash at any point leaves either no legs (the message is redelivered) or legs in doubt that
the sweeper resolves by looking them up at the broker. Nothing here ever resends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.client import JetStreamContext
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from brokers.alpaca.constants import BROKER_TIMEZONE
from replication.model import ZERO, FollowerState, FollowerTarget, Instrument, PlannedLeg
from replication.plan import master_leg, plan, trading_day
from replication.state import LegStatus, transition
from schemas.messages import ORDERS_STREAM, SWEEP_NOW_SUBJECT, OrderMessage
from services import bus
from services.brokerage import BrokerFactory
from services.crypto import CredentialCipher
from services.db import repositories as repo
from services.events import publish_leg_events, publish_order_event
from services.metrics import FANOUT, FIRST_LEG, LEGS
from services.sending import place_once, request_from_leg
from services.settings import Settings
from services.snapshots import Snapshot, Snapshots
from services.targets import TargetCache, broker_for_row
from services.wiring import runtime, serve, stop_on_signals

log = logging.getLogger("copytrade.replicator")


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
    ) -> None:
        self.snapshots = snapshots
        self.targets = TargetCache()
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

    async def run(self, stop: asyncio.Event) -> None:
        psub = await self.js.pull_subscribe_bind(
            durable=bus.REPLICATOR_CONSUMER, stream=ORDERS_STREAM
        )
        limit = self.settings.max_orders_in_flight
        while not stop.is_set():
            room = limit - len(self._in_flight)
            if room <= 0:
                await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                messages = await psub.fetch(batch=min(room, self.settings.fetch_batch), timeout=0.5)
            except (NatsTimeoutError, TimeoutError):
                continue
            except Exception:
                log.exception("fetch failed; retrying")
                await asyncio.sleep(0.5)
                continue
            for message in messages:
                task = asyncio.create_task(self.handle(message))
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=self.settings.leg_lease_s)

    async def handle(self, message: Msg) -> None:
        try:
            order = OrderMessage.model_validate_json(message.data)
        except ValidationError:
            log.error("dropping malformed order message (seq %s)", message.metadata.sequence.stream)
            await message.term()
            return
        try:
            await self.replicate(order, message)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Not acked (or acked with legs recorded): redelivery or the sweeper finishes the job.
            log.exception("replication of order %s failed", order.order_id)

    async def replicate(self, order: OrderMessage, message: Msg | None) -> None:
        async with self.engine.connect() as conn:
            rows = await repo.load_targets(conn, order.master_id)
            master_row = await repo.get_account_credentials(conn, order.account_id)
            halts = await repo.halt_scopes(conn)
        by_account = {str(row["account_id"]): row for row in rows}
        brokers = {
            account_id: broker_for_row(self.factory, self.cipher, row)
            for account_id, row in by_account.items()
        }
        master_broker = None
        if master_row is not None:
            master_row = {**master_row, "account_id": master_row["id"]}
            by_account[order.account_id] = master_row
            master_broker = broker_for_row(self.factory, self.cipher, master_row)
        base_targets = _one_per_account([self.targets.target(row) for row in rows])
        snapshot = await self.snapshots.collect(order, master_broker, base_targets, brokers, halts)
        now = datetime.now(UTC)
        day = trading_day(now, BROKER_TIMEZONE)
        size = self.settings.shard_size
        shards = [base_targets[i : i + size] for i in range(0, len(base_targets), size)] or [[]]

        first_answer: list[float] = []
        sending: list[asyncio.Task[list[repo.LegOutcome]]] = []
        sent_ids: list[str] = []
        renewal = asyncio.create_task(self._renew_leases(sent_ids))
        legs_total, skipped = 0, []
        try:
            # Record and send shard by shard: the first followers' orders leave while later
            # shards are still being recorded. Each leg is still durable before it is sent.
            for index, shard in enumerate(shards):
                mine = await self._record(
                    order,
                    shard,
                    snapshot,
                    now,
                    day,
                    master_row if index == 0 else None,
                    last=index == len(shards) - 1,
                )
                legs_total += len(mine)
                to_send = [leg for leg in mine if leg.status is LegStatus.SUBMITTING]
                skipped += [leg.leg_id for leg in mine if leg.status is LegStatus.SKIPPED]
                sent_ids.extend(leg.leg_id for leg in to_send)
                sending.append(
                    asyncio.create_task(self._send_all(to_send, by_account, first_answer))
                )
            if message is not None:
                with contextlib.suppress(Exception):
                    await message.ack()  # every leg is durable: a lost ack is only a redelivery
            outcomes = [o for shard in await asyncio.gather(*sending) for o in shard]
        finally:
            renewal.cancel()
            for task in sending:
                task.cancel()  # only matters on failure: in-doubt legs go to the sweeper
        LEGS.labels("skipped").inc(len(skipped))
        async with self.engine.begin() as conn:
            settled_rows = await repo.settle_legs(conn, outcomes)
            skipped_rows = await repo.list_copies_by_ids(conn, skipped) if skipped else []
            progress = await repo.order_progress(conn, order.order_id)
        for row in settled_rows:
            LEGS.labels(row["status"]).inc()
        if first_answer:
            FIRST_LEG.observe(max(0.0, first_answer[0] - order.created_at.timestamp()))
        if progress["fanout_ms"] is not None:
            FANOUT.observe(progress["fanout_ms"] / 1000)
        follower_rows = [r for r in [*skipped_rows, *settled_rows] if r["action"] != "master"]
        await publish_leg_events(self.nc, follower_rows, order.created_at)
        await publish_order_event(self.nc, order.order_id, order.master_id, progress)
        if progress["cancel_requested"]:
            await self.nc.publish(SWEEP_NOW_SUBJECT, b"cancel")
        log.info(
            "order %s: %d legs in %d shards (%d sent, %d skipped) in %s ms",
            order.order_id,
            legs_total,
            len(shards),
            len(outcomes),
            len(skipped),
            progress["fanout_ms"],
        )

    async def _record(
        self,
        order: OrderMessage,
        shard: list[FollowerTarget],
        snapshot: Snapshot,
        now: datetime,
        day: date,
        master_row: dict[str, Any] | None,
        last: bool,
    ) -> list[PlannedLeg]:
        """Plan and record one shard in one transaction; returns the legs this call inserted."""
        async with self.engine.begin() as conn:
            # Risk rows stay locked until the legs are recorded: caps hold across workers.
            risk = await repo.lock_risk(
                conn,
                [t.account_id for t in shard],
                day,
                order.symbol,
                [t.account_id for t in shard if t.caps.max_open_positions is not None],
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
                for target in shard
            ]
            legs = plan(order, targets, now, snapshot.context)
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
            await repo.spend_risk(conn, mine, day)
            if last:
                await repo.mark_planned(conn, order.order_id)
        return mine

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


async def main_async(settings: Settings) -> None:
    async with runtime(settings, "replicator", pool_size=5) as rt:
        await bus.ensure_consumer(rt.js, settings.consumer_ack_wait_s, settings.max_deliver)
        snapshots = Snapshots(rt.redis, settings.snapshot_deadline_s, settings.equity_max_age_s)
        replicator = Replicator(settings, rt.engine, rt.nc, rt.js, rt.cipher, rt.factory, snapshots)
        log.info("replicator started")
        await replicator.run(stop_on_signals())
    log.info("replicator stopped")


if __name__ == "__main__":
    serve(main_async)
