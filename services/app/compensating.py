"""Compensating a master order its broker refused (issue 18, copy_on = submitted).

Copies went out alongside the master's own order; once the master's broker refused it, each
copy is brought back to what the master holds — nothing — exactly once per order:
- copies still resting at their broker are canceled (reason master_rejected);
- what a copy filled is closed by one `unwind` leg per copy (a market order the other way),
  unless its subscription chose on_master_rejected = keep;
- copies still in doubt (submitting, unknown) are left to the sweeper first: the claim lapses
  and the compensation runs again once they are settled.
Unwind legs are ordinary legs (deterministic ids and client ids, recorded before they are sent,
ledger spent), so a crash in between leaves them to the sweeper like any other leg."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncEngine

from replication.ids import client_order_id
from replication.model import PlannedLeg
from replication.plan import leg_id
from replication.state import LegStatus
from schemas.common import OrderType, Side, TimeInForce, format_decimal
from services.app.sending import Sender, cancel_and_confirm
from services.app.settling import Settler
from services.app.targets import broker_for
from services.infra.brokerage import BrokerFactory, broker_day
from services.infra.crypto import CredentialCipher
from services.infra.db.repositories.compensation import (
    CompensatedLeg,
    claim_compensation,
    compensation_done,
    follower_legs,
    in_doubt,
    refused_uncompensated,
)
from services.infra.db.repositories.legs import insert_legs
from services.infra.db.repositories.risk import spend_risk
from services.infra.settings import Settings

log = logging.getLogger("copytrade.compensating")
UNWIND_ACTION = "unwind"
REASON = "master_rejected"
_RESTING = ("accepted", "partially_filled")


class Compensator:
    def __init__(
        self,
        engine: AsyncEngine,
        factory: BrokerFactory,
        cipher: CredentialCipher,
        sender: Sender,
        settler: Settler,
        lease_s: float,
    ) -> None:
        self.engine = engine
        self.factory = factory
        self.cipher = cipher
        self.sender = sender
        self.settler = settler
        self.lease_s = lease_s

    async def compensate(self, order_id: str) -> bool:
        """Compensate the order if its master leg was refused and nobody did; True when done."""
        async with self.engine.begin() as conn:
            if not await claim_compensation(conn, order_id, self.lease_s):
                return False
            legs = await follower_legs(conn, order_id)
        if in_doubt(legs):
            return False  # the claim lapses; the sweeper comes back once they are settled
        await self._cancel_resting([leg for leg in legs if leg.status in _RESTING])
        async with self.engine.connect() as conn:
            legs = await follower_legs(conn, order_id)
        await self._unwind(legs)
        async with self.engine.begin() as conn:
            await compensation_done(conn, order_id)
        log.info("order %s: master refused, %d copies compensated", order_id, len(legs))
        return True

    async def compensate_pending(self, limit: int = 50) -> bool:
        """The sweeper's pass: orders refused after a crash, or whose copies were in doubt when
        the master's refusal came; True when the batch was full."""
        async with self.engine.connect() as conn:
            order_ids = await refused_uncompensated(conn, limit)
        for order_id in order_ids:
            await self.compensate(order_id)
        return len(order_ids) == limit

    async def _cancel_resting(self, legs: list[CompensatedLeg]) -> None:
        outcomes = []
        for leg in legs:
            broker = broker_for(self.factory, self.cipher, leg)
            found = await cancel_and_confirm(
                broker, leg.broker, leg, self.lease_s * 0.5, self.lease_s
            )
            if found is not None:
                outcomes.append(replace(found, reason=REASON))
        if outcomes:
            await self.settler.settle(outcomes)

    async def _unwind(self, legs: list[CompensatedLeg]) -> None:
        done = {str(leg.details.get("unwinds")) for leg in legs if leg.action == UNWIND_ACTION}
        unwinds = [
            unwind_leg(leg)
            for leg in legs
            if leg.action != UNWIND_ACTION
            and (leg.filled_qty or 0) > 0
            and leg.on_master_rejected == "close"
            and str(leg.id) not in done
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


def unwind_leg(leg: CompensatedLeg) -> PlannedLeg:
    """A market order the other way for what the copy filled."""
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
        qty=filled,
        type=OrderType.MARKET,
        time_in_force=TimeInForce.DAY,
        limit_price=None,
        stop_price=None,
        status=LegStatus.SUBMITTING,
        reason=REASON,
        details={"unwinds": str(leg.id), "reason": REASON, "qty": format_decimal(filled)},
    )


def compensator(
    settings: Settings,
    engine: AsyncEngine,
    factory: BrokerFactory,
    cipher: CredentialCipher,
    settler: Settler,
) -> Compensator:
    sender = Sender(
        engine,
        factory,
        cipher,
        settings.leg_lease_s,
        settings.unknown_recheck_s,
        settings.max_concurrent_per_host,
    )
    return Compensator(engine, factory, cipher, sender, settler, settings.leg_lease_s)
