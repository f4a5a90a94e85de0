"""Sending legs to brokers and turning answers into leg outcomes (worker and sweeper share it)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from replication.errors import (
    BrokerError,
    DuplicateClientOrderId,
    Fatal,
    NotFound,
    Rejected,
    Retryable,
    Unknown,
)
from replication.model import BrokerOrder, OrderRequest, PlannedLeg
from replication.ports import Broker
from replication.state import LegStatus
from schemas.common import OrderType, Side, TimeInForce
from services.app.targets import Sealed, broker_for
from services.infra.brokerage import BrokerFactory
from services.infra.crypto import CredentialCipher
from services.infra.db.repositories.leases import renew_leases
from services.infra.db.repositories.legs import ClaimedLeg, LegOutcome
from services.infra.logs import bind_log_context
from services.infra.metrics import BROKER_REQUESTS, labelled
from services.infra.once import once
from services.infra.ratelimit import ON_ADMITTED
from services.infra.settings import Settings

log = logging.getLogger("copytrade.sending")


class Admissions:
    """A batch's legs through admission (services/infra/ratelimit.py: the 429 gate and the
    budgets), each counted once whether it was admitted or failed first; `done` is set when
    every leg is. An order's first copies leave while the worker waits for this instead of
    planning its next batch: a hundred legs of planning is milliseconds of CPU that the first
    copies' admission answers would otherwise wait behind."""

    def __init__(self, legs: int) -> None:
        self._left = legs
        self.done = asyncio.Event()
        if legs <= 0:
            self.done.set()

    def one(self) -> Callable[[], None]:
        """The counter of one leg (idempotent)."""
        return once(self._count)

    def _count(self) -> None:
        self._left -= 1
        if self._left <= 0:
            self.done.set()


def request_from_leg(leg: PlannedLeg) -> OrderRequest:
    assert leg.qty is not None, "only planned legs with a quantity are sent"
    return OrderRequest(
        client_order_id=leg.client_order_id,
        symbol=leg.symbol,
        side=leg.side,
        qty=leg.qty,
        type=leg.type,
        time_in_force=leg.time_in_force,
        limit_price=leg.limit_price,
        stop_price=leg.stop_price,
    )


def request_from_row(row: ClaimedLeg) -> OrderRequest:
    assert row.qty is not None, "only legs with a quantity are sent"
    return OrderRequest(
        client_order_id=row.client_order_id,
        symbol=row.symbol,
        side=Side(row.side),
        qty=row.qty,
        type=OrderType(row.type),
        time_in_force=TimeInForce(row.time_in_force),
        limit_price=row.limit_price,
        stop_price=row.stop_price,
    )


def outcome_from_order(leg_id: str, order: BrokerOrder) -> LegOutcome:
    return LegOutcome(
        leg_id=leg_id,
        status=order.status,
        reason=order.reason,
        broker_order_id=order.broker_order_id,
        filled_qty=order.filled_qty,
        filled_avg_price=order.filled_avg_price,
    )


def outcome_from_error(leg_id: str, error: BrokerError, recheck_s: float) -> LegOutcome:
    """Map the taxonomy onto leg outcomes. Only Rejected and Fatal are final here; Retryable
    (429, budget refused, circuit open, connection refused) means not placed: `retrying`, never
    `unknown`, so no lookup is spent on it."""
    if isinstance(error, Rejected):
        return LegOutcome(leg_id, LegStatus.REJECTED, reason=f"{error.code}: {error.reason}")
    if isinstance(error, Fatal):
        return LegOutcome(leg_id, LegStatus.FAILED, reason=f"{error.code}: {error.message}")
    if isinstance(error, Retryable):
        # Not placed; the sweeper (the only path that resends) retries after the broker's hint.
        return LegOutcome(
            leg_id,
            LegStatus.RETRYING,
            reason=f"retrying: {error.code}",
            recheck_after_s=max(error.retry_after, recheck_s),
            paced=error.code == "rate_limited",
        )
    return LegOutcome(
        leg_id, LegStatus.UNKNOWN, reason=f"in_doubt: {error.code}", recheck_after_s=recheck_s
    )


async def _timed(broker_name: str, operation: str, coro: Any) -> Any:
    started = time.perf_counter()
    outcome = "ok"
    try:
        return await coro
    except BrokerError as exc:
        outcome = exc.code
        raise
    except TimeoutError:
        outcome = "deadline"
        raise
    finally:
        labelled(BROKER_REQUESTS, broker_name, operation, outcome).observe(
            time.perf_counter() - started
        )


async def or_existing(broker: Broker, broker_name: str, send: Any, cid: str, symbol: str) -> Any:
    """Send (a place or a replace under client id `cid`); a duplicate client id means the
    order is already there (a resend after a crash, or a lost answer): look it up instead."""
    try:
        return await send
    except DuplicateClientOrderId:
        return await _timed(broker_name, "lookup", broker.get_order_by_client_id(cid, symbol))


async def place_once(
    broker: Broker,
    broker_name: str,
    leg_id: str,
    request: OrderRequest,
    deadline_s: float,
    recheck_s: float,
) -> LegOutcome:
    """Place a leg, or find it at the broker when it is already there."""
    try:
        async with asyncio.timeout(deadline_s):
            order = await or_existing(
                broker,
                broker_name,
                _timed(broker_name, "place", broker.place_order(request)),
                request.client_order_id,
                request.symbol,
            )
        return outcome_from_order(leg_id, order)
    except TimeoutError:
        return outcome_from_error(leg_id, Unknown("deadline exceeded", code="deadline"), recheck_s)
    except NotFound:
        # Duplicate, then not found: the broker contradicts itself; ask again later.
        return outcome_from_error(leg_id, Unknown("duplicate but not found"), recheck_s)
    except BrokerError as exc:
        return outcome_from_error(leg_id, exc, recheck_s)
    except Exception as exc:
        # A bug or an unexpected library error: whether the order left is unknown.
        log.exception("placing leg %s failed unexpectedly", leg_id)
        return outcome_from_error(leg_id, Unknown(repr(exc)[:200], code="internal"), recheck_s)


async def look_up(
    broker: Broker,
    broker_name: str,
    leg_id: str,
    client_order_id: str,
    symbol: str,
    deadline_s: float,
    recheck_s: float,
) -> LegOutcome | None:
    """The leg's order at the broker, or None when the broker has no such order."""
    try:
        async with asyncio.timeout(deadline_s):
            order = await _timed(
                broker_name, "lookup", broker.get_order_by_client_id(client_order_id, symbol)
            )
        return outcome_from_order(leg_id, order)
    except NotFound:
        return None
    except TimeoutError:
        return outcome_from_error(leg_id, Unknown("deadline exceeded", code="deadline"), recheck_s)
    except Rejected as exc:
        return outcome_from_error(leg_id, Unknown(exc.message, code=exc.code), recheck_s)
    except Retryable as exc:
        # The lookup was not answered (429, circuit open): the order may still be there, so
        # the leg stays in doubt; it is looked up again after the broker's hint.
        return LegOutcome(
            leg_id,
            LegStatus.UNKNOWN,
            reason=f"in_doubt: lookup {exc.code}",
            recheck_after_s=max(exc.retry_after, recheck_s),
            paced=exc.code == "rate_limited",
        )
    except BrokerError as exc:
        return outcome_from_error(leg_id, exc, recheck_s)
    except Exception as exc:
        log.exception("looking up leg %s failed unexpectedly", leg_id)
        return outcome_from_error(leg_id, Unknown(repr(exc)[:200], code="internal"), recheck_s)


async def cancel_and_confirm(
    broker: Broker,
    broker_name: str,
    leg: ClaimedLeg,
    deadline_s: float,
    recheck_s: float,
) -> LegOutcome | None:
    """Cancel a leg's resting order, then ask the broker what it became (canceled, or filled
    meanwhile); None when the broker has no such order."""
    try:
        if leg.broker_order_id is not None:  # else: not known to have reached it; look it up
            async with asyncio.timeout(deadline_s):
                await _timed(
                    broker_name, "cancel", broker.cancel_order(leg.broker_order_id, leg.symbol)
                )
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # filled meanwhile (422), or the broker is down: look it up
        log.info("cancel of leg %s: %s", leg.id, exc)
    return await look_up(
        broker,
        broker_name,
        str(leg.id),
        leg.client_order_id,
        leg.symbol,
        deadline_s,
        recheck_s,
    )


class Sender:
    """Sends recorded legs to their brokers, at most `max_per_host` at once per broker, and
    keeps their leases fresh while it does, so no sweeper steps in on a live send."""

    def __init__(
        self,
        engine: AsyncEngine,
        factory: BrokerFactory,
        cipher: CredentialCipher,
        lease_s: float,
        recheck_s: float,
        max_per_host: int,
    ) -> None:
        self.engine = engine
        self.factory = factory
        self.cipher = cipher
        self.lease_s = lease_s
        self.recheck_s = recheck_s
        self._host_limits: dict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(max_per_host)
        )

    @classmethod
    def from_settings(
        cls,
        engine: AsyncEngine,
        factory: BrokerFactory,
        cipher: CredentialCipher,
        settings: Settings,
    ) -> Sender:
        """The sender every use case of a process uses: leases, rechecks and per-host limits
        from its settings."""
        return cls(
            engine,
            factory,
            cipher,
            settings.leg_lease_s,
            settings.unknown_recheck_s,
            settings.max_concurrent_per_host,
        )

    async def send_all(
        self,
        legs: list[PlannedLeg],
        by_account: Mapping[str, Sealed],
        first_answer: list[float],
        admissions: Admissions | None = None,
    ) -> list[LegOutcome]:
        return list(
            await asyncio.gather(
                *(
                    self._send(leg, by_account[leg.account_id], first_answer, admissions)
                    for leg in legs
                )
            )
        )

    async def renew_leases(self, leg_ids: list[str]) -> None:
        """While this worker sends, keep its legs' leases fresh (a third of the lease apart)."""
        interval = self.lease_s / 3
        while True:
            await asyncio.sleep(interval)
            if not leg_ids:  # shards still being recorded append to this list
                continue
            try:
                async with self.engine.begin() as conn:
                    await renew_leases(conn, leg_ids, self.lease_s)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("lease renewal failed", exc_info=True)

    async def _send(
        self,
        leg: PlannedLeg,
        row: Sealed,
        first_answer: list[float],
        admissions: Admissions | None = None,
    ) -> LegOutcome:
        # Its own task (gathered): the ids, and the admission hook, stay on this leg's task.
        bind_log_context(leg_id=leg.leg_id, account_id=leg.account_id)
        passed = None if admissions is None else admissions.one()
        if passed is not None:
            ON_ADMITTED.set(passed)
        try:
            return await self._place(leg, row, first_answer)
        finally:
            if passed is not None:
                passed()  # refused or failed before admission: it will not be sent now

    async def _place(self, leg: PlannedLeg, row: Sealed, first_answer: list[float]) -> LegOutcome:
        broker = broker_for(self.factory, self.cipher, row)
        async with self._host_limits[leg.broker]:
            outcome = await place_once(
                broker,
                leg.broker,
                leg.leg_id,
                request_from_leg(leg),
                deadline_s=self.lease_s * 0.5,
                recheck_s=self.recheck_s,
            )
        if not first_answer:
            first_answer.append(time.time())
        return outcome
