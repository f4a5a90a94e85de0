"""Bringing the copies to the master's execution (issue 18), exactly once per order.

Copies went out alongside the master's own order (copy_on = submitted). When the master's own
leg ends short of its quantity, each copy is brought to the same fraction of its planned
quantity:
- refused by the master's broker (rejected, failed): fraction 0, reason master_rejected; a
  subscription with on_master_rejected = keep keeps what its copy filled;
- canceled after filling part of it (the master canceled through the API or at its broker, an
  IOC cut short, a day order expired at the close: the broker's `expired` is a cancel):
  fraction filled / qty, reason master_partial_cancel;
- expired: never placed before its deadline (the master's broker kept refusing to take it, 429
  or down): fraction filled / qty (nothing), reason master_expired; a subscription with
  on_master_rejected = keep keeps what its copy filled, as for a refusal.
The master's order is its master leg when it came through the API, and what the poller recorded
when the master placed it directly at its broker and it ended there short of its quantity
(services.worker.poller): both go through this one path.
Copies still resting at their broker are canceled; what a copy filled beyond the fraction of its
quantity (floored to its step, replication.sizing.excess_over_fraction) is closed by one `unwind`
leg per copy (a market order the other way); a copy that filled less is left as it is: a cancel
never opens new exposure. Copies still in doubt (submitting, unknown, retrying) are left to the
sweeper first: the claim lapses and the compensation runs again once they are settled.
Unwind legs are ordinary legs (deterministic ids and client ids, recorded before they are sent,
ledger spent), so a crash in between leaves them to the sweeper like any other leg."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncEngine

from replication.ids import client_order_id
from replication.model import PlannedLeg
from replication.plan import leg_id
from replication.sizing import excess_over_fraction
from replication.state import LegStatus
from schemas.common import OrderType, Side, TimeInForce, format_decimal
from services.app.legwork import LegWork
from services.app.sending import Sender, cancel_and_confirm
from services.app.settling import Settler
from services.app.targets import broker_for
from services.infra.brokerage import BrokerFactory, broker_day
from services.infra.crypto import CredentialCipher
from services.infra.db.repositories.compensation import (
    REFUSED,
    SHORT,
    CompensatedLeg,
    MasterFill,
    claim_compensation,
    compensation_done,
    follower_legs,
    in_doubt,
    master_fill,
    refused_uncompensated,
)
from services.infra.db.repositories.legs import insert_legs
from services.infra.db.repositories.risk import spend_risk
from services.infra.settings import Settings

log = logging.getLogger("copytrade.compensating")
UNWIND_ACTION = "unwind"
REASON = "master_rejected"
PARTIAL_REASON = "master_partial_cancel"
EXPIRED_REASON = "master_expired"
_RESTING = ("accepted", "partially_filled")


@dataclass(frozen=True, slots=True)
class Goal:
    """What the order's copies are brought to."""

    fraction: Decimal  # of each copy's planned quantity
    reason: str  # of the unwind legs
    cancel_reason: str  # of the resting copies canceled
    keep_allowed: bool  # on_master_rejected = keep applies


def goal_for(master: MasterFill | None) -> Goal | None:
    """Refused → nothing; canceled or expired short of its quantity → the fraction the master
    filled."""
    if master is None:
        return None
    if master.status in REFUSED:
        return Goal(Decimal(0), REASON, REASON, keep_allowed=True)
    qty, filled = master.qty, master.filled_qty or Decimal(0)
    if master.status not in SHORT or qty is None or qty <= 0 or filled >= qty:
        return None
    if master.status == "expired":
        return Goal(filled / qty, EXPIRED_REASON, EXPIRED_REASON, keep_allowed=True)
    return Goal(filled / qty, PARTIAL_REASON, "master_canceled", keep_allowed=False)


class Compensator(LegWork):
    async def compensate(self, order_id: str) -> bool:
        """Compensate the order if the master's order was refused (or ended short of its
        quantity) and nobody did; True when done."""
        async with self.engine.begin() as conn:
            if not await claim_compensation(conn, order_id, self.lease_s):
                return False
            goal = goal_for(await master_fill(conn, order_id))
            legs = await follower_legs(conn, order_id)
        if goal is None or in_doubt(legs):
            return False  # the claim lapses; the sweeper comes back once they are settled
        resting = [leg for leg in legs if leg.status in _RESTING]
        await self._cancel_resting(resting, goal.cancel_reason)
        async with self.engine.connect() as conn:
            legs = await follower_legs(conn, order_id)
        if any(leg.status in _RESTING for leg in legs):
            # A cancel not confirmed yet: one unwind per copy, so only once its fills are final.
            return False
        await self._unwind(legs, goal)
        async with self.engine.begin() as conn:
            await compensation_done(conn, order_id)
        log.info(
            "order %s: %s, %d copies brought to %s of their quantity",
            order_id,
            goal.reason,
            len(legs),
            format_decimal(goal.fraction),
        )
        return True

    async def compensate_pending(self, limit: int = 50) -> bool:
        """The sweeper's pass: orders refused after a crash, or whose copies were in doubt when
        the master's refusal came; True when the batch was full."""
        async with self.engine.connect() as conn:
            order_ids = await refused_uncompensated(conn, limit)
        for order_id in order_ids:
            await self.compensate(order_id)
        return len(order_ids) == limit

    async def _cancel_resting(self, legs: list[CompensatedLeg], reason: str) -> None:
        outcomes = []
        for leg in legs:
            broker = broker_for(self.factory, self.cipher, leg)
            found = await cancel_and_confirm(
                broker, leg.broker, leg, self.lease_s * 0.5, self.lease_s
            )
            if found is not None:
                outcomes.append(replace(found, reason=reason))
        if outcomes:
            await self.settler.settle(outcomes)

    async def _unwind(self, legs: list[CompensatedLeg], goal: Goal) -> None:
        done = {str(leg.details.get("unwinds")) for leg in legs if leg.action == UNWIND_ACTION}
        unwinds = [
            unwind_leg(leg, excess, goal)
            for leg in legs
            if leg.action != UNWIND_ACTION
            and not (goal.keep_allowed and leg.on_master_rejected == "keep")
            and str(leg.id) not in done
            and (excess := excess_of(leg, goal)) > 0
        ]
        if not unwinds:
            return
        rows = {str(leg.account_id): leg for leg in legs}
        now = datetime.now(UTC)
        days = {u.account_id: broker_day(u.broker, now) for u in unwinds}
        async with self.engine.begin() as conn:
            inserted = set(await insert_legs(conn, str(legs[0].master_id), unwinds, self.lease_s))
            mine = [u for u in unwinds if u.leg_id in inserted]
            await spend_risk(conn, mine, days)
        outcomes = await self.sender.send_all(mine, rows, [])
        await self.settler.settle(outcomes)


def excess_of(leg: CompensatedLeg, goal: Goal) -> Decimal:
    """What the copy filled beyond the goal's fraction of its quantity (its own step)."""
    step = Decimal(str(leg.details.get("qty_step") or "1"))
    filled, qty = leg.filled_qty or Decimal(0), leg.qty or Decimal(0)
    return excess_over_fraction(filled, qty, goal.fraction, step)


def unwind_leg(leg: CompensatedLeg, qty: Decimal, goal: Goal) -> PlannedLeg:
    """A market order the other way for `qty` of what the copy filled."""
    order_id, account_id = str(leg.order_id), str(leg.account_id)
    filled = leg.filled_qty or Decimal(0)
    return PlannedLeg(
        leg_id=leg_id(order_id, account_id, UNWIND_ACTION),
        order_id=order_id,
        subscription_id=None if leg.subscription_id is None else str(leg.subscription_id),
        follower_id=str(leg.follower_id),
        account_id=account_id,
        broker=leg.broker,
        action=UNWIND_ACTION,
        client_order_id=client_order_id(order_id, account_id, UNWIND_ACTION),
        symbol=leg.symbol,
        side=Side.SELL if leg.side == "buy" else Side.BUY,
        qty=qty,
        type=OrderType.MARKET,
        time_in_force=TimeInForce.DAY,
        limit_price=None,
        stop_price=None,
        status=LegStatus.SUBMITTING,
        reason=goal.reason,
        details={
            "unwinds": str(leg.id),
            "reason": goal.reason,
            "qty": format_decimal(qty),
            "copy_filled": format_decimal(filled),
            "fraction": format_decimal(goal.fraction.quantize(Decimal("0.000001"))),
        },
    )


def compensator(
    settings: Settings,
    engine: AsyncEngine,
    factory: BrokerFactory,
    cipher: CredentialCipher,
    settler: Settler,
) -> Compensator:
    sender = Sender.from_settings(engine, factory, cipher, settings)
    return Compensator(engine, factory, cipher, sender, settler, settings.leg_lease_s)
