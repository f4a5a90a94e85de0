"""Replace propagation: bring open legs to the master order's latest version (quantity, prices)
with the same sizing. Run by the sweeper; every step is safe to repeat after a crash: the new
client order id is derived from (order, account, action, version), so a replace that reached
the broker is found by lookup instead of being sent twice."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Set
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from replication.errors import BrokerError, Rejected
from replication.ids import client_order_id
from replication.model import FollowerState, FollowerTarget, Instrument, MasterContext
from replication.plan import gate_reason, plan_leg
from replication.ports import Broker
from replication.state import TERMINAL, LegStatus
from schemas.common import OrderType, Side
from schemas.messages import OrderMessage
from services.app.order_messages import order_message_from_row
from services.app.sending import cancel_and_confirm, look_up, or_existing, outcome_from_order
from services.app.targets import target_from
from services.infra.brokerage import broker_day
from services.infra.db.repositories.halts import GLOBAL_HALT_SCOPE, master_halt_scope
from services.infra.db.repositories.legs import (
    ClaimedLeg,
    Leg,
    LegOutcome,
    SettledLeg,
    finish_replace,
    reserve_replace,
    settle_legs,
)
from services.infra.db.repositories.orders import MasterOrder
from services.infra.db.repositories.risk import lock_risk
from services.infra.db.repositories.subscriptions import Target

log = logging.getLogger("copytrade.replace")


def _decimal(details: dict[str, Any], key: str) -> Decimal | None:
    value = details.get(key)
    return None if value is None else Decimal(str(value))


def replanned_qty(
    leg: Leg,
    order: MasterOrder,
    subscription: Target | None,
    copy_position_now: Decimal,
    halts: Set[str] = frozenset(),
) -> tuple[Decimal | None, str | None]:
    """The leg's quantity for the new version of its master order, with the same sizing and the
    inputs recorded when the leg was planned (equities, reference price, positions).

    Under a gate (a halt, a pause, an ended subscription, a symbol or side filter) a replace may
    shrink or reprice the open copy, never grow it: growth is refused with the gate's name."""
    if leg.action == "master":
        return Decimal(order.qty), None
    if subscription is None:
        return leg.qty, None  # unsubscribed since: keep the quantity, move prices
    details = dict(leg.details or {})
    message = order_message_from_row(order)
    reference = (
        message.limit_price
        if message.type in (OrderType.LIMIT, OrderType.STOP_LIMIT)
        else _decimal(details, "reference_price")
    )
    context = MasterContext(
        reference_price=reference,
        price_source="limit_price"
        if message.limit_price
        else details.get("price_source", "unavailable"),
        master_equity=_decimal(details, "master_equity"),
        master_position=_decimal(details, "master_position") or Decimal(0),
    )
    leg_qty = leg.qty or Decimal(0)
    own = leg_qty if leg.side == "buy" else -leg_qty
    state = FollowerState(
        equity=_decimal(details, "follower_equity"),
        day_pnl=Decimal(0),  # the day's loss limit was checked when the leg was first placed
        broker_position=_decimal(details, "follower_position") or Decimal(0),
        copy_position=copy_position_now - own,
    )
    target = replace(
        target_from(replace(subscription, paused=False, account_halted=False, ending=False)),
        state=state,
        instrument=Instrument(message.symbol, qty_step=_decimal(details, "qty_step") or Decimal(1)),
    )
    now = datetime.now(UTC)
    planned = plan_leg(message, target, context, now)
    gate = _replace_gate(message, target, subscription, halts, now)
    if gate is not None and planned.qty is not None and planned.qty > leg_qty:
        return leg_qty, f"replace_growth_refused: {gate}"
    return planned.qty, planned.reason


def _replace_gate(
    message: OrderMessage,
    sized: FollowerTarget,
    subscription: Target,
    halts: Set[str],
    now: datetime,
) -> str | None:
    """What stops this copy from growing now (the signal age does not apply: a replace is the
    master's own later instruction)."""
    if GLOBAL_HALT_SCOPE in halts:
        return "global_halt"
    if master_halt_scope(message.master_id) in halts:
        return "master_halted"
    target = replace(
        sized,
        paused=subscription.paused,
        account_halted=subscription.account_halted,
        ending=subscription.ending,
        filters=sized.filters.model_copy(update={"max_signal_age_ms": None}),
    )
    side = message.side
    if target.filters.reverse:
        side = Side.SELL if message.side is Side.BUY else Side.BUY
    gate = gate_reason(message, target, side, now)
    return None if gate is None else gate[0]


@dataclass(frozen=True)
class _Replace:
    """One leg brought to one version of its master order."""

    engine: Any
    broker: Broker
    leg: ClaimedLeg
    order: MasterOrder
    version: int
    new_cid: str  # derived from the version: a replace that reached the broker is found again
    deadline_s: float
    recheck_s: float
    halts: Set[str]

    @property
    def leg_id(self) -> str:
        return str(self.leg.id)

    async def look_up(self, cid: str) -> LegOutcome | None:
        return await look_up(
            self.broker,
            self.leg.broker,
            self.leg_id,
            cid,
            self.leg.symbol,
            self.deadline_s,
            self.recheck_s,
        )

    async def finish(
        self,
        outcome: LegOutcome | None,
        cid: str | None,
        qty: Decimal | None,
        keep_reservation: bool,
    ) -> SettledLeg | None:
        async with self.engine.begin() as conn:
            return await finish_replace(
                conn, self.leg_id, self.version, outcome, cid, qty, keep_reservation
            )


async def replace_leg(
    engine: Any,
    broker: Broker,
    leg: ClaimedLeg,
    order: MasterOrder,
    subscription: Target | None,
    deadline_s: float,
    recheck_s: float,
    halts: Set[str] = frozenset(),
) -> SettledLeg | None:
    """Replace one leg at its broker; returns the updated leg row, or None to retry later."""
    version = int(order.version)
    new_cid = client_order_id(str(leg.order_id), str(leg.account_id), f"{leg.action}:v{version}")
    job = _Replace(engine, broker, leg, order, version, new_cid, deadline_s, recheck_s, halts)
    found = await job.look_up(new_cid)
    if found is not None and found.status is not LegStatus.UNKNOWN:
        # An earlier attempt's replace reached the broker: record it, never send it again.
        pending = (leg.details or {}).get("pending_replace") or {}
        qty = Decimal(pending["qty"]) if pending.get("version") == version else None
        return await job.finish(found, new_cid, qty, True)
    qty, reason = await _reserve(job, subscription)
    if qty is None:
        return await _cancel_instead(job, reason)
    return await _replace_at_broker(job, qty)


async def _reserve(job: _Replace, subscription: Target | None) -> tuple[Decimal | None, str | None]:
    """Size the leg for the new version and reserve the ledger change, under the risk lock."""
    leg = job.leg
    async with job.engine.begin() as conn:
        day = broker_day(leg.broker, datetime.now(UTC))
        risk = await lock_risk(conn, [str(leg.account_id)], day, leg.symbol)
        ledger = risk.get(str(leg.account_id))
        copy_now = (
            ledger.copied(str(leg.subscription_id), leg.symbol)
            if ledger and leg.subscription_id
            else Decimal(0)
        )
        qty, reason = replanned_qty(leg, job.order, subscription, copy_now, job.halts)
        if qty is not None:
            qty = await reserve_replace(conn, leg, job.version, qty, reason)
    return qty, reason


async def _cancel_instead(job: _Replace, reason: str | None) -> SettledLeg | None:
    """The new version sizes this follower to nothing: cancel its order instead."""
    old = await cancel_and_confirm(
        job.broker, job.leg.broker, job.leg, job.deadline_s, job.recheck_s
    )
    if old is None or old.status not in TERMINAL:
        return None
    async with job.engine.begin() as conn:
        await settle_legs(conn, [replace(old, reason=f"replaced: {reason}")])
        return await finish_replace(conn, job.leg_id, job.version, None, None, None, False)


async def _replace_at_broker(job: _Replace, qty: Decimal) -> SettledLeg | None:
    leg, message = job.leg, order_message_from_row(job.order)
    if leg.broker_order_id is None:
        return None  # open at the broker but its id unknown: the refresh pass records it first
    try:
        async with asyncio.timeout(job.deadline_s):
            new = await or_existing(
                job.broker,
                leg.broker,
                job.broker.replace_order(
                    leg.broker_order_id,
                    job.new_cid,
                    qty,
                    message.limit_price,
                    message.stop_price,
                    leg.symbol,
                ),
                job.new_cid,
                leg.symbol,
            )
    except Rejected as exc:
        # Not replaceable any more (filled or canceled meanwhile): record what it became.
        log.info("replace of leg %s refused: %s", job.leg_id, exc)
        old = await job.look_up(leg.client_order_id)
        return await job.finish(
            old if old and old.status is not LegStatus.UNKNOWN else None, None, None, False
        )
    except (BrokerError, TimeoutError) as exc:
        log.info("replace of leg %s in doubt: %s", job.leg_id, exc)
        return None  # the lease runs out; the next pass looks the new id up first
    # Kite modifies in place and keeps the original tag: follow what the broker reports.
    return await job.finish(
        outcome_from_order(job.leg_id, new), new.client_order_id or job.new_cid, qty, True
    )
