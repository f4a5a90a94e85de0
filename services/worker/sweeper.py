"""Sweeper: resolves legs left in doubt, and republishes master orders stuck in the outbox.

A leg is in doubt when it is `submitting` or `unknown` past its lease: its worker died, or the
broker timed out or answered 5xx. The sweeper first asks the broker for the order by client order
id; only when the broker has none (and the last send is older than the grace period) does it send
again. A `retrying` leg was refused before it was placed (429, circuit open, connection refused):
it is sent again without a lookup. It is the only path that ever resends. Retries are bounded by
time, not attempts: capped exponential backoff with jitter until the copy deadline
(replication.retry), then the leg ends `expired` with its reason and attempts.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import replace
from datetime import UTC, datetime

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.client import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncEngine

from brokers.registry import descriptor
from replication.retry import backoff_s, copy_deadline
from replication.state import TERMINAL, LegStatus
from schemas.messages import SWEEP_NOW_SUBJECT
from services.app.compensating import compensator
from services.app.flattening import Flattener
from services.app.replacing import replace_leg
from services.app.sending import (
    Sender,
    cancel_and_confirm,
    look_up,
    place_once,
    request_from_row,
)
from services.app.settling import Settler
from services.app.targets import broker_for
from services.infra.brokerage import BrokerFactory
from services.infra.crypto import CredentialCipher, CredentialError
from services.infra.db.repositories.halts import halt_scopes
from services.infra.db.repositories.leases import (
    claim_cancels,
    claim_in_doubt,
    claim_replaces,
    claim_stale_open,
    mark_sent,
)
from services.infra.db.repositories.legs import ClaimedLeg, LegOutcome
from services.infra.db.repositories.orders import orders_by_ids
from services.infra.db.repositories.subscriptions import subscriptions_by_ids
from services.infra.logs import bind_log_context
from services.infra.metrics import SWEEPER_LEGS
from services.infra.positions import MasterPositions
from services.infra.settings import Settings
from services.infra.wiring import runtime, serve, stop_on_signals
from services.worker.housekeeping import Housekeeping

log = logging.getLogger("copytrade.sweeper")


class Sweeper:
    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        nc: NATS,
        js: JetStreamContext,
        cipher: CredentialCipher,
        factory: BrokerFactory,
        master_positions: MasterPositions | None = None,
    ) -> None:
        self.master_positions = master_positions or MasterPositions(None, 0)
        self.settings = settings
        self.engine = engine
        self.nc = nc
        self.js = js
        self.cipher = cipher
        self.factory = factory
        self.settler = Settler(engine, nc, self.master_positions)
        sender = Sender.from_settings(engine, factory, cipher, settings)
        self.flattener = Flattener(
            engine, factory, cipher, sender, self.settler, settings.leg_lease_s
        )
        self.compensator = compensator(settings, engine, factory, cipher, self.settler)
        self.housekeeping = Housekeeping(settings, engine, js, cipher)

    async def run(self, stop: asyncio.Event) -> None:
        wake = asyncio.Event()

        async def on_wake(_: Msg) -> None:
            wake.set()

        await self.nc.subscribe(SWEEP_NOW_SUBJECT, cb=on_wake)
        while not stop.is_set():
            wake.clear()
            try:
                busy = await self.sweep_once()
                busy = await self.cancel_once() or busy
                busy = await self.replace_once() or busy
                busy = await self.refresh_once() or busy
                busy = await self.flattener.flatten_once() or busy
                busy = await self.compensator.compensate_pending() or busy
                await self.housekeeping.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sweep failed")
                busy = False
            if not busy:
                waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
                await asyncio.wait(
                    waiters,
                    timeout=self.settings.sweep_interval_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                for waiter in waiters:
                    waiter.cancel()

    async def sweep_once(self, limit: int = 200) -> bool:
        """Resolve one batch of legs in doubt; True when the batch was full."""
        async with self.engine.begin() as conn:
            claimed = await claim_in_doubt(conn, limit, self.settings.leg_lease_s)
        if not claimed:
            return False
        deadlines = await self._deadlines(claimed)
        outcomes = await asyncio.gather(
            *(self._resolve(row, deadlines[str(row.id)]) for row in claimed)
        )
        await self.settler.settle(
            [with_backoff(row, o) for row, o in zip(claimed, outcomes, strict=True)]
        )
        return len(claimed) == limit

    async def cancel_once(self, limit: int = 200) -> bool:
        """Cancel open legs of orders whose master asked to cancel; True when the batch was full."""
        async with self.engine.begin() as conn:
            claimed = await claim_cancels(conn, limit, self.settings.leg_lease_s)
        if not claimed:
            return False
        outcomes = await asyncio.gather(*(self._cancel(row) for row in claimed))
        await self.settler.settle([o for o in outcomes if o is not None])
        return len(claimed) == limit

    async def refresh_once(self, limit: int = 200) -> bool:
        """Follow legs that rest at their broker (fills, partial fills, expiries)."""
        async with self.engine.begin() as conn:
            claimed = await claim_stale_open(
                conn, limit, self.settings.open_leg_refresh_s, self.settings.leg_lease_s
            )
        if not claimed:
            return False
        deadline = self.settings.leg_lease_s * 0.5

        async def refresh(row: ClaimedLeg) -> LegOutcome | None:
            broker = broker_for(self.factory, self.cipher, row)
            found = await look_up(
                broker,
                row.broker,
                str(row.id),
                row.client_order_id,
                row.symbol,
                deadline,
                self.settings.unknown_recheck_s,
            )
            if found is None or found.status is LegStatus.UNKNOWN:
                return None
            return found

        outcomes = await asyncio.gather(*(refresh(row) for row in claimed))
        await self.settler.settle([o for o in outcomes if o is not None])
        return len(claimed) == limit

    async def replace_once(self, limit: int = 100) -> bool:
        """Bring open legs to their master order's latest version; True when the batch was full."""
        async with self.engine.begin() as conn:
            claimed = await claim_replaces(conn, limit, self.settings.leg_lease_s)
        if not claimed:
            return False
        async with self.engine.connect() as conn:
            orders = await orders_by_ids(conn, [str(r.order_id) for r in claimed])
            subscriptions = await subscriptions_by_ids(
                conn, [str(r.subscription_id) for r in claimed if r.subscription_id]
            )
            halts = await halt_scopes(conn)  # a halted copy may shrink, never grow
        deadline = self.settings.leg_lease_s * 0.5
        results = await asyncio.gather(
            *(
                replace_leg(
                    self.engine,
                    broker_for(self.factory, self.cipher, row),
                    row,
                    orders[str(row.order_id)],
                    subscriptions.get(str(row.subscription_id)) if row.subscription_id else None,
                    deadline,
                    self.settings.unknown_recheck_s,
                    halts,
                )
                for row in claimed
            ),
            return_exceptions=True,
        )
        rows = []
        for row, result in zip(claimed, results, strict=True):
            if isinstance(result, BaseException):
                log.error("replace of leg %s failed: %r", row.id, result)
            elif result is not None:
                rows.append(result)
        await self.settler.announce(rows)
        return len(claimed) == limit

    async def _cancel(self, row: ClaimedLeg) -> LegOutcome | None:
        found = await cancel_and_confirm(
            broker_for(self.factory, self.cipher, row),
            row.broker,
            row,
            self.settings.leg_lease_s * 0.5,
            self.settings.unknown_recheck_s,
        )
        if found is None or found.status not in TERMINAL:
            return None  # still open or unknown: the lease runs out and the next pass tries again
        if found.status is LegStatus.CANCELED:
            reason = "flatten" if row.cancel_requested_at is not None else "master_canceled"
            found = replace(found, reason=reason)
        SWEEPER_LEGS.labels(
            "canceled" if found.status is LegStatus.CANCELED else "cancel_late"
        ).inc()
        return found

    async def _resolve(self, row: ClaimedLeg, deadline_at: datetime) -> LegOutcome:
        leg_id = str(row.id)
        bind_log_context(leg_id=leg_id, account_id=str(row.account_id))  # its own task
        try:
            broker = broker_for(self.factory, self.cipher, row)
        except CredentialError:
            SWEEPER_LEGS.labels("failed").inc()
            return LegOutcome(leg_id, LegStatus.FAILED, reason="credentials_unreadable")
        settings = self.settings
        wait = settings.leg_lease_s * 0.5
        if row.status != LegStatus.RETRYING.value:
            # In doubt: it may be at the broker already; only a lookup that finds nothing (and
            # a quiet grace period after the last send) allows sending it again.
            found = await look_up(
                broker,
                row.broker,
                leg_id,
                row.client_order_id,
                row.symbol,
                wait,
                settings.unknown_recheck_s,
            )
            if found is not None:
                label = "found" if found.status is not LegStatus.UNKNOWN else "retry"
                SWEEPER_LEGS.labels(label).inc()
                return found
            waiting = self._in_grace(row)
            if waiting is not None:
                return waiting
        if datetime.now(UTC) >= deadline_at:
            # Not at the broker and no longer worth placing: a recorded end, never a silent drop.
            SWEEPER_LEGS.labels("expired").inc()
            return LegOutcome(
                leg_id,
                LegStatus.EXPIRED,
                reason=f"copy_deadline: {row.reason or 'not placed'} ({row.attempts} attempts)",
            )
        async with self.engine.begin() as conn:
            await mark_sent(conn, leg_id, settings.leg_lease_s)
        SWEEPER_LEGS.labels("resent").inc()
        return await place_once(
            broker, row.broker, leg_id, request_from_row(row), wait, settings.unknown_recheck_s
        )

    def _in_grace(self, row: ClaimedLeg) -> LegOutcome | None:
        """A request sent moments ago may still be on its way: look again before resending."""
        last_sent: datetime | None = row.last_sent_at
        if last_sent is None:
            return None
        quiet_for = (datetime.now(UTC) - last_sent).total_seconds()
        if quiet_for >= self.settings.resend_grace_s:
            return None
        SWEEPER_LEGS.labels("grace").inc()
        return LegOutcome(
            str(row.id),
            LegStatus.UNKNOWN,
            reason="in_doubt: not_found_yet",
            recheck_after_s=self.settings.resend_grace_s - quiet_for,
        )

    async def _deadlines(self, claimed: list[ClaimedLeg]) -> dict[str, datetime]:
        """Each claimed leg's copy deadline (replication.retry): its master order's signal time
        plus its subscription's copy window, within the trading day for `day` orders."""
        async with self.engine.connect() as conn:
            orders = await orders_by_ids(conn, list({str(r.order_id) for r in claimed}))
            subscriptions = await subscriptions_by_ids(
                conn, list({str(r.subscription_id) for r in claimed if r.subscription_id})
            )
        deadlines = {}
        for row in claimed:
            order = orders.get(str(row.order_id))
            target = subscriptions.get(str(row.subscription_id))
            signal_at = order.created_at if order is not None else row.created_at
            retried_at = (row.details or {}).get("retried_at")
            if retried_at:  # a retry asked for by a person starts a new copy window
                signal_at = max(signal_at, datetime.fromisoformat(str(retried_at)))
            deadlines[str(row.id)] = copy_deadline(
                signal_at,
                target.filters if target is not None else None,
                row.time_in_force,
                descriptor(row.broker).timezone,
            )
        return deadlines


def with_backoff(row: ClaimedLeg, outcome: LegOutcome) -> LegOutcome:
    """Legs left to retry (or to look up again) wait a capped exponential backoff with jitter
    after their `attempts`, never less than the broker's hint (up to the cap); a leg waiting on
    its account's 429 gate comes back when the gate opens."""
    if outcome.recheck_after_s is None:
        return outcome
    wait = backoff_s(
        row.attempts, random.random(), retry_after_s=outcome.recheck_after_s, paced=outcome.paced
    )
    return replace(outcome, recheck_after_s=wait)


async def main_async(settings: Settings) -> None:
    async with runtime(settings, "sweeper", pool_size=3, monitoring=True) as rt:
        positions = MasterPositions(rt.redis, settings.master_position_max_age_s)
        sweeper = Sweeper(settings, rt.engine, rt.nc, rt.js, rt.cipher, rt.factory, positions)
        log.info("sweeper started")
        await sweeper.run(stop_on_signals())
    log.info("sweeper stopped")


if __name__ == "__main__":
    serve(main_async)
