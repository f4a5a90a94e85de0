"""Planning: one master order and a subscriptions snapshot → one leg per follower account.

Each leg is PLANNED with a quantity, or SKIPPED with a reason; both carry the inputs that led
to them in `details`. Pure: same inputs, same plan, on any worker.

A leg has two parts:
- **closing**: when the master order reduces the master's position, the follower's copy
  position is reduced by the same fraction (all of it when the master closes fully). The
  follower's closable position is the smaller of its copy position (our ledger) and its broker
  position, so a leg never sells what the follower does not hold and never flips it by rounding.
- **opening**: whatever of the master order adds exposure, sized by the subscription's mode.

Gates stop new exposure, never exits. Caps, close-only, a pause, an account halt, an ended
subscription, the symbol and side filters and a stale signal limit only the opening part: closing
never adds risk, and blocking it would keep a follower in a position its master has left. The
global halt and a master halt are full stops (nothing is sent; their API offers `flatten`).

Copies belong to the subscription that made them: `copy_position` is this subscription's
ledger, so a follower account that copies several masters closes each master's copies on that
master's exits only.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from replication.ids import client_order_id
from replication.model import (
    MASTER_ACTION,
    OPEN_ACTION,
    ZERO,
    FollowerState,
    FollowerTarget,
    MasterContext,
    PlannedLeg,
)
from replication.sizing import SizingSkip, round_to_step, size_for
from replication.state import LegStatus
from schemas.common import Side, format_decimal
from schemas.copy_settings import Caps, OnCap, Rounding
from schemas.messages import OrderMessage

_LEG_NAMESPACE = uuid.UUID("6f1c3c1e-4d0b-4a53-9c55-2f0f3c7c9a11")


_LEG_NAMESPACE_BYTES = _LEG_NAMESPACE.bytes


def leg_id(order_id: str, account_id: str, action: str) -> str:
    """Deterministic leg id, so a replanned leg is the same row on every worker: exactly
    `str(uuid.uuid5(_LEG_NAMESPACE, "order/account/action"))`, computed without the UUID
    object (one per leg on the hot path)."""
    name = f"{order_id}/{account_id}/{action}".encode()
    digest = bytearray(hashlib.sha1(_LEG_NAMESPACE_BYTES + name, usedforsecurity=False).digest())
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest[:16].hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _fmt(value: Decimal | None) -> str | None:
    return None if value is None else format_decimal(value)


def _direction(side: Side) -> Decimal:
    return Decimal(1) if side is Side.BUY else Decimal(-1)


def closable(state: FollowerState, side: Side) -> Decimal:
    """How much of this subscription's copy position an order on `side` may close (>= 0): never
    more than its copy, nor than the broker position less what other masters' copies hold (so
    a follower's own holdings are never sold, and netted positions across masters close)."""
    wanted = -_direction(side)  # a sell closes a long (+), a buy closes a short (-)
    copy = state.copy_position * wanted
    broker = (state.broker_position - state.other_copies) * wanted
    return max(ZERO, min(copy, broker))


def exposure_in(state: FollowerState, side: Side) -> Decimal:
    """Worst-case position of this subscription in the direction of `side`: its ledger, or the
    broker position less what the account's other subscriptions copied, whichever is larger."""
    direction = _direction(side)
    mine_at_broker = state.broker_position - state.other_copies
    return max(state.copy_position * direction, mine_at_broker * direction)


def master_split(order: OrderMessage, master_position: Decimal) -> tuple[Decimal, Decimal]:
    """(fraction of the master position this order closes, master quantity that opens)."""
    reduces = master_position * _direction(order.side) < 0
    if not reduces:
        return ZERO, order.qty
    held = abs(master_position)
    closed = min(order.qty, held)
    return closed / held, order.qty - closed


def _stop_reason(context: MasterContext, target: FollowerTarget) -> str | None:
    """Full stops: nothing at all is sent (the global halt, a master halt), or nothing can be
    planned (a snapshot this leg needs is missing)."""
    if context.global_halt:
        return "global_halt"
    if context.master_halted:
        return "master_halted"
    return target.state.unavailable


def gate_reason(
    order: OrderMessage, target: FollowerTarget, side: Side, now: datetime
) -> tuple[str, dict[str, Any]] | None:
    """Why this follower takes no new exposure from this order, if it does not (exits flow)."""
    if target.account_halted:
        return "halted", {}
    if target.paused:
        return "paused", {}
    if target.ending:
        return "unsubscribed", {}
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


def _apply_caps(
    opening: Decimal,
    closing: Decimal,
    side: Side,
    symbol: str,
    caps: Caps,
    state: FollowerState,
    context: MasterContext,
    step: Decimal,
    details: dict[str, Any],
) -> tuple[Decimal, str | None]:
    """Limit the opening quantity by every cap; returns (opening, reason of the binding cap)."""
    reason: str | None = None
    clamp = caps.on_cap is OnCap.CLAMP

    def limit(room: Decimal, cap: str) -> None:
        nonlocal opening, reason
        room = max(ZERO, round_to_step(max(room, ZERO), step, Rounding.FLOOR))
        if opening > room:
            opening = room if clamp else ZERO
            reason = f"clamped_{cap.removeprefix('cap_')}" if clamp and room > 0 else cap

    if opening <= 0:
        return opening, None
    if caps.daily_loss_limit is not None:
        details["daily_loss_limit"] = format_decimal(caps.daily_loss_limit)
        if state.day_pnl is None:
            return ZERO, "pnl_unavailable"
        if -state.day_pnl >= caps.daily_loss_limit:
            return ZERO, "daily_loss_limit"  # close-only for the rest of the day
    if caps.max_orders_per_day is not None and state.orders_today >= caps.max_orders_per_day:
        details["orders_today"] = state.orders_today
        return ZERO, "cap_max_orders_per_day"
    exposure_after_close = max(ZERO, exposure_in(state, side) + closing)
    if caps.max_open_positions is not None and exposure_after_close <= 0:
        opened = state.open_symbols - {symbol}
        if len(opened) >= caps.max_open_positions:
            details["open_positions"] = len(opened)
            return ZERO, "cap_max_open_positions"
    if caps.max_qty is not None:
        limit(caps.max_qty, "cap_max_qty")
    if caps.max_notional is not None:
        if context.reference_price is None:
            return ZERO, "price_unavailable"
        limit(caps.max_notional / context.reference_price, "cap_max_notional")
    if caps.max_position is not None:
        details["exposure"] = format_decimal(exposure_after_close)
        limit(caps.max_position - exposure_after_close, "cap_max_position")
    return opening, reason


def plan_leg(
    order: OrderMessage, target: FollowerTarget, context: MasterContext, now: datetime
) -> PlannedLeg:
    side = order.side
    if target.filters.reverse:
        side = Side.SELL if side is Side.BUY else Side.BUY
    state, instrument = target.state, target.instrument
    step = instrument.qty_step
    details: dict[str, Any] = {
        "master_qty": format_decimal(order.qty),
        "mode": target.sizing.mode,
        "master_position": format_decimal(context.master_position),
        "follower_position": format_decimal(state.broker_position),
        "copy_position": format_decimal(state.copy_position),
        "qty_step": format_decimal(step),
    }
    if state.other_copies:
        details["other_copies"] = format_decimal(state.other_copies)
    if context.reference_price is not None:
        details["reference_price"] = format_decimal(context.reference_price)
        details["price_source"] = context.price_source
    qty, reason = _quantity(order, target, context, side, now, details)
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
        status=LegStatus.PLANNED if qty is not None else LegStatus.SKIPPED,
        reason=reason,
        details=details,
    )


def _quantity(
    order: OrderMessage,
    target: FollowerTarget,
    context: MasterContext,
    side: Side,
    now: datetime,
    details: dict[str, Any],
) -> tuple[Decimal | None, str | None]:
    """The leg's quantity (closing part + opening part) or None, and the reason that limited it."""
    stop = _stop_reason(context, target)
    if stop is not None:
        return None, stop
    gate = gate_reason(order, target, side, now)
    if gate is not None:
        details["gate"] = gate[0]
        details.update(gate[1])
    state, step = target.state, target.instrument.qty_step
    fraction, master_opening = master_split(order, context.master_position)
    reason: str | None = None
    closing = ZERO
    if fraction > 0:
        base = closable(state, side)
        closing = base if fraction >= 1 else min(base, round_to_step(base * fraction, step))
        details["close_fraction"] = format_decimal(fraction.quantize(Decimal("0.000001")))
        details["close_qty"] = format_decimal(closing)
        if base <= 0 and master_opening <= 0:
            reason = "no_position"
    opening = ZERO
    if master_opening > 0 and gate is not None:
        reason = gate[0]  # the gate cut the opening part; the closing part is still copied
    elif master_opening > 0:
        opening, reason = _opening(order, target, context, side, master_opening, closing, details)
    total = closing + opening
    details["open_qty"] = format_decimal(opening)
    total, minimum = _minimums(order, target, context, total, details)
    reason = minimum or reason
    if total > 0:
        return total, reason
    return None, reason or "below_min_qty"


def _opening(
    order: OrderMessage,
    target: FollowerTarget,
    context: MasterContext,
    side: Side,
    master_opening: Decimal,
    closing: Decimal,
    details: dict[str, Any],
) -> tuple[Decimal, str | None]:
    """The part of the leg that adds exposure: sized by the subscription's mode, then capped."""
    state, step = target.state, target.instrument.qty_step
    sized = size_for(target.sizing, master_opening, order, context, state, step)
    if isinstance(sized, SizingSkip):
        details.update(sized.details)
        return ZERO, sized.reason
    details["raw_qty"] = format_decimal(sized.raw_qty)
    if target.sizing.mode == "equity_ratio":
        details["master_equity"] = _fmt(context.master_equity)
    if target.sizing.mode in ("equity_ratio", "risk_percent"):
        details["follower_equity"] = _fmt(state.equity)
    opening, reason = _apply_caps(
        sized.qty, closing, side, order.symbol, target.caps, state, context, step, details
    )
    if sized.qty <= 0 and closing <= 0:
        reason = "below_min_qty"
    return opening, reason


def _minimums(
    order: OrderMessage,
    target: FollowerTarget,
    context: MasterContext,
    total: Decimal,
    details: dict[str, Any],
) -> tuple[Decimal, str | None]:
    """The instrument's minimum quantity and notional: below either, nothing is sent."""
    instrument = target.instrument
    if total > 0 and total < instrument.minimum_qty:
        details["min_qty"] = format_decimal(instrument.minimum_qty)
        return ZERO, "below_min_qty"
    price = order.limit_price or context.reference_price
    if total > 0 and instrument.min_notional > 0 and price is not None:
        if total * price < instrument.min_notional:
            details["min_notional"] = format_decimal(instrument.min_notional)
            return ZERO, "below_min_notional"
    return total, None


def plan(
    order: OrderMessage,
    targets: Iterable[FollowerTarget],
    now: datetime,
    context: MasterContext | None = None,
) -> list[PlannedLeg]:
    """One leg per follower account; an account subscribed twice still gets one leg."""
    context = context or MasterContext()
    legs: dict[str, PlannedLeg] = {}
    for target in sorted(targets, key=lambda t: (t.account_id, t.subscription_id)):
        if target.account_id not in legs:
            legs[target.account_id] = plan_leg(order, target, context, now)
    return list(legs.values())


def trading_day(now: datetime, timezone: str) -> date:
    """The broker-local trading day (daily counters reset at the broker's midnight)."""
    return now.astimezone(ZoneInfo(timezone)).date()


def master_reduces(order: OrderMessage, master_position: Decimal) -> bool:
    return master_split(order, master_position)[0] > 0


def master_leg(order: OrderMessage, broker: str) -> PlannedLeg:
    """The master's own order at the master's broker, recorded and sent like any leg."""
    return PlannedLeg(
        leg_id=leg_id(order.order_id, order.account_id, MASTER_ACTION),
        order_id=order.order_id,
        subscription_id=None,
        follower_id=order.master_id,
        account_id=order.account_id,
        broker=broker,
        action=MASTER_ACTION,
        client_order_id=client_order_id(order.order_id, order.account_id, MASTER_ACTION),
        symbol=order.symbol,
        side=order.side,
        qty=order.qty,
        type=order.type,
        time_in_force=order.time_in_force,
        limit_price=order.limit_price,
        stop_price=order.stop_price,
        status=LegStatus.PLANNED,
        details={"master_qty": format_decimal(order.qty)},
    )
