"""Planning: one master order and a subscriptions snapshot → one leg per follower account.

Each leg is either PLANNED with a quantity or SKIPPED with a reason and the inputs that led to
it. Pure: same inputs, same plan, on any worker.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from replication.ids import client_order_id
from replication.model import OPEN_ACTION, FollowerTarget, PlannedLeg
from replication.sizing import round_to_step, size
from replication.state import LegStatus
from schemas.common import Side, format_decimal
from schemas.copy_settings import OnCap
from schemas.messages import OrderMessage

_LEG_NAMESPACE = uuid.UUID("6f1c3c1e-4d0b-4a53-9c55-2f0f3c7c9a11")


def leg_id(order_id: str, account_id: str, action: str) -> str:
    """Deterministic leg id, so a replanned leg is the same row on every worker."""
    return str(uuid.uuid5(_LEG_NAMESPACE, f"{order_id}/{account_id}/{action}"))


def _skip_reason(
    order: OrderMessage, target: FollowerTarget, side: Side, now: datetime
) -> tuple[str, dict[str, Any]] | None:
    if target.account_halted:
        return "halted", {}
    if target.paused:
        return "paused", {}
    filters = target.filters
    if filters.symbols_allow is not None and order.symbol not in filters.symbols_allow:
        return "symbol_not_allowed", {"symbols_allow": filters.symbols_allow}
    if filters.symbols_block is not None and order.symbol in filters.symbols_block:
        return "symbol_blocked", {"symbols_block": filters.symbols_block}
    if filters.sides is not None and side not in filters.sides:
        return "side_filtered", {"sides": [str(s) for s in filters.sides]}
    if filters.max_signal_age_ms is not None:
        age_ms = (now - order.created_at).total_seconds() * 1000
        if age_ms > filters.max_signal_age_ms:
            return "stale_signal", {
                "age_ms": round(age_ms, 3),
                "max_signal_age_ms": filters.max_signal_age_ms,
            }
    return None


def plan_leg(order: OrderMessage, target: FollowerTarget, now: datetime) -> PlannedLeg:
    side = order.side
    if target.filters.reverse:
        side = Side.SELL if side is Side.BUY else Side.BUY
    details: dict[str, Any] = {"master_qty": format_decimal(order.qty), "mode": target.sizing.mode}
    status = LegStatus.PLANNED
    reason: str | None = None
    qty: Decimal | None = None

    skip = _skip_reason(order, target, side, now)
    if skip is not None:
        status, (reason, extra) = LegStatus.SKIPPED, skip
        details.update(extra)
    else:
        sized = size(target.sizing, order.qty, target.qty_step)
        details["raw_qty"] = format_decimal(sized.raw_qty)
        qty = sized.qty
        max_qty = target.caps.max_qty
        if max_qty is not None and qty > max_qty:
            details["max_qty"] = format_decimal(max_qty)
            if target.caps.on_cap is OnCap.SKIP:
                status, reason, qty = LegStatus.SKIPPED, "cap_max_qty", None
            else:
                # Clamp, then round down so the clamped quantity still respects the cap.
                qty = round_to_step(max_qty, target.qty_step, target.sizing.rounding)
                if qty > max_qty:
                    qty -= target.qty_step
                reason = "clamped_max_qty"
        if qty is not None and qty <= 0:
            details["qty_step"] = format_decimal(target.qty_step)
            status, reason, qty = LegStatus.SKIPPED, "below_min_qty", None

    return PlannedLeg(
        leg_id=leg_id(order.order_id, target.account_id, OPEN_ACTION),
        order_id=order.order_id,
        subscription_id=target.subscription_id,
        follower_id=target.follower_id,
        account_id=target.account_id,
        broker=target.broker,
        action=OPEN_ACTION,
        client_order_id=client_order_id(order.order_id, target.account_id, OPEN_ACTION),
        symbol=order.symbol,
        side=side,
        qty=qty,
        type=order.type,
        time_in_force=order.time_in_force,
        limit_price=order.limit_price,
        stop_price=order.stop_price,
        status=status,
        reason=reason,
        details=details,
    )


def plan(order: OrderMessage, targets: Iterable[FollowerTarget], now: datetime) -> list[PlannedLeg]:
    """One leg per follower account; an account subscribed twice still gets one leg."""
    legs: dict[str, PlannedLeg] = {}
    for target in sorted(targets, key=lambda t: (t.account_id, t.subscription_id)):
        if target.account_id not in legs:
            legs[target.account_id] = plan_leg(order, target, now)
    return list(legs.values())
