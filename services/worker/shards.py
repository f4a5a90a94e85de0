"""One shard of a planned order, through the stages: record a batch (app/recording) → send it
(app/sending) → settle the shard (app/settling). The first followers' orders leave while later
batches are still being recorded; each leg is durable before it is sent, so a crash leaves
either nothing (the message is redelivered) or legs in doubt for the sweeper."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from replication.model import MASTER_ACTION, FollowerTarget, PlannedLeg
from replication.ports import Broker
from replication.state import TERMINAL, LegStatus
from schemas.messages import OrderMessage, PlanContext
from services.app.compensating import Compensator
from services.app.gating import MasterFirst
from services.app.recording import Recorder
from services.app.sending import Admissions, Sender
from services.app.settling import Settler, settling_connection
from services.app.snapshots import Snapshot, Snapshots
from services.app.targets import Sealed, TargetSet, broker_for
from services.infra.brokerage import BrokerFactory
from services.infra.crypto import CredentialCipher
from services.infra.db.repositories.accounts import SealedAccount
from services.infra.db.repositories.legs import LegOutcome, settle_legs, settled_by_ids
from services.infra.metrics import FANOUT, FIRST_LEG
from services.infra.positions import MasterPositions
from services.infra.settings import Settings

log = logging.getLogger("copytrade.replicator")
_FINAL = frozenset(status.value for status in TERMINAL)
_FIRST_ADMISSIONS_S = 0.05


@dataclass(frozen=True)
class Shard:
    """One shard of a planned order, as this worker runs it."""

    order: OrderMessage
    index: int
    shards: int
    context: PlanContext
    master_row: SealedAccount | None  # only with shard 0 of an order placed through the API
    fix_plan: str | None  # the plan to store with the first batch, when this worker made it
    master_refused: bool = False  # copy_on = accepted and the master's broker said no


@dataclass
class _Sent:
    """What recording and sending a shard produced, for settling it."""

    batches: int
    legs: int = 0
    skipped: list[str] = field(default_factory=list)
    outcomes: list[LegOutcome] = field(default_factory=list)
    first_answer: list[float] = field(default_factory=list)


class ShardRunner:
    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        factory: BrokerFactory,
        cipher: CredentialCipher,
        snapshots: Snapshots,
        master_positions: MasterPositions,
        settler: Settler,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.factory = factory
        self.cipher = cipher
        self.snapshots = snapshots
        self.master_positions = master_positions
        self.settler = settler
        self.recorder = Recorder(engine, settings.leg_lease_s)
        self.sender = Sender.from_settings(engine, factory, cipher, settings)
        self._background: set[asyncio.Task[Any]] = set()
        self.compensator = Compensator(
            engine, factory, cipher, self.sender, settler, settings.leg_lease_s
        )
        self.master_first = MasterFirst(
            engine, self.recorder, self.sender, settler, settings.leg_lease_s * 3
        )

    async def run(
        self,
        shard: Shard,
        followers: TargetSet,
        on_recorded: Callable[[], Awaitable[None]],
        after_first_batch: Callable[[], None] | None = None,
        first_batch_answered: Callable[[], None] | None = None,
    ) -> None:
        """Record and send one shard batch by batch, then settle it; `on_recorded` runs once
        every leg of the shard is durable (the message may be acked then), `after_first_batch`
        once the first batch's copies have started, `first_batch_answered` once they are
        answered."""
        order, master_row = shard.order, shard.master_row
        by_account: dict[str, Sealed] = dict(followers.rows)
        rows = followers.rows

        def broker_of(account_id: str) -> Broker:  # only for the followers snapshots ask
            return broker_for(self.factory, self.cipher, rows[account_id])

        if master_row is not None:
            by_account[order.account_id] = master_row
        snapshot = await self.snapshots.followers(
            order, shard.context, followers.targets, broker_of
        )
        sent = await self._record_and_send(
            shard,
            followers.targets,
            snapshot,
            by_account,
            on_recorded,
            after_first_batch,
            first_batch_answered,
        )
        await self._settle(shard, sent, copies=bool(followers.targets) or shard.shards > 1)

    async def _record_and_send(
        self,
        shard: Shard,
        targets: list[FollowerTarget],
        snapshot: Snapshot,
        by_account: dict[str, Sealed],
        on_recorded: Callable[[], Awaitable[None]],
        after_first_batch: Callable[[], None] | None,
        first_batch_answered: Callable[[], None] | None,
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
                    shard.master_refused,
                )
                first = number == 0 and shard.index == 0
                admissions = await self._send_batch(
                    order, mine, by_account, sent, sending, sent_ids, first
                )
                if admissions is not None:
                    # The order's first copies are admitted and sent before the next batch's
                    # planning takes the loop (bounded: a slow Valkey must not stall the rest).
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(_FIRST_ADMISSIONS_S):
                            await admissions.done.wait()
                if number == 0 and first_batch_answered is not None:
                    sending[0].add_done_callback(_ignoring_task(first_batch_answered))
                if number == 0 and after_first_batch is not None:
                    after_first_batch()  # after the first copies have started
            await on_recorded()
            sent.outcomes = [o for batch in await asyncio.gather(*sending) for o in batch]
        finally:
            renewal.cancel()
            for task in sending:
                task.cancel()  # only matters on failure: in-doubt legs go to the sweeper
        return sent

    async def _send_batch(
        self,
        order: OrderMessage,
        mine: list[PlannedLeg],
        by_account: dict[str, Sealed],
        sent: _Sent,
        sending: list[asyncio.Task[list[LegOutcome]]],
        sent_ids: list[str],
        first: bool = False,
    ) -> Admissions | None:
        """Start sending a recorded batch: the followers' orders at once; the master's own
        order once its cached positions are dropped (nobody may plan with a position from
        before it), a Valkey round trip the copies need not wait for. For an order's `first`
        batch, returns its copies' admissions."""
        sent.legs += len(mine)
        to_send = [leg for leg in mine if leg.status is LegStatus.SUBMITTING]
        sent.skipped += [leg.leg_id for leg in mine if leg.status is LegStatus.SKIPPED]
        sent_ids.extend(leg.leg_id for leg in to_send)
        copies = [leg for leg in to_send if leg.action != MASTER_ACTION]
        admissions = Admissions(len(copies)) if first else None
        sending.append(
            asyncio.create_task(
                self.sender.send_all(copies, by_account, sent.first_answer, admissions)
            )
        )
        if any(leg.action == MASTER_ACTION for leg in mine):
            await self.master_positions.invalidate(order.account_id)
            own = [leg for leg in to_send if leg.action == MASTER_ACTION]
            sending.append(
                asyncio.create_task(self.sender.send_all(own, by_account, sent.first_answer))
            )
        return admissions

    async def _settle(self, shard: Shard, sent: _Sent, copies: bool) -> None:
        order = shard.order
        async with settling_connection(self.engine, sent.outcomes) as conn:
            # The read first: in autocommit the settle is committed when it returns, and a
            # failure between the two would leave settled legs nobody announces.
            skipped_rows = await settled_by_ids(conn, sent.skipped) if sent.skipped else []
            settled_rows = await settle_legs(conn, sent.outcomes)
        progress = (
            await self.settler.announce(
                [*skipped_rows, *settled_rows], order.created_at, (order.order_id, order.master_id)
            )
        )[order.order_id]
        if shard.master_row is not None and any(
            r.action == MASTER_ACTION and r.status in ("rejected", "failed", "canceled")
            for r in settled_rows
        ):
            # copy_on = submitted: the copies went out with it; bring them to what the master's
            # broker executed (once): nothing when refused, the fraction filled when canceled
            # short of its quantity (an IOC, say). The sweeper does it for later ends.
            await self.compensator.compensate(order.order_id)
        if (
            copies
            and shard.master_row is not None
            and any(r.action == MASTER_ACTION and r.status in _FINAL for r in settled_rows)
        ):
            # Read the master's positions again now that its order is done, off the critical
            # path, so the next order of this master need not wait for the broker (a master
            # without followers has no copies to size: its orders do not read them).
            self._spawn(
                self.snapshots.master_positions(
                    order.account_id,
                    broker_for(self.factory, self.cipher, shard.master_row),
                    use_cache=False,
                )
            )
        if sent.first_answer and shard.index == 0:
            FIRST_LEG.observe(max(0.0, sent.first_answer[0] - order.created_at.timestamp()))
        if progress.fanout_ms is not None:
            FANOUT.observe(progress.fanout_ms / 1000)
        log.info(
            "order %s shard %d/%d: %d legs in %d batches (%d sent, %d skipped), order %s",
            order.order_id,
            shard.index + 1,
            shard.shards,
            sent.legs,
            sent.batches,
            len(sent.outcomes),
            len(sent.skipped),
            progress.status,
        )

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _ignoring_task(call: Callable[[], None]) -> Callable[[asyncio.Task[Any]], None]:
    """`call` as a task's done callback."""
    return lambda _: call()
