"""Sizing: the follower quantity that a master order opens, before caps. Pure.

| mode           | raw quantity                                                      |
|----------------|-------------------------------------------------------------------|
| `fixed`        | `qty`                                                             |
| `multiplier`   | master qty * `factor`                                             |
| `equity_ratio` | master qty * follower equity / master equity * `factor`           |
| `notional`     | `amount` / reference price (limit price, else the last price)     |
| `risk_percent` | follower equity * `percent` / 100 / abs(entry - master stop price) |

The raw quantity is then rounded to the instrument's quantity step (`floor` by default).
A mode that lacks an input (no price, no equity, no stop) gives a skip reason instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any

from replication.model import FollowerState, MasterContext
from schemas.common import format_decimal
from schemas.copy_settings import (
    AnySizing,
    EquityRatioSizing,
    FixedSizing,
    MultiplierSizing,
    NotionalSizing,
    RiskPercentSizing,
    Rounding,
)
from schemas.messages import OrderMessage


@dataclass(frozen=True)
class SizingResult:
    qty: Decimal
    raw_qty: Decimal


@dataclass(frozen=True)
class SizingSkip:
    reason: str
    details: dict[str, Any]


def round_to_step(qty: Decimal, step: Decimal, rounding: Rounding = Rounding.FLOOR) -> Decimal:
    """Round a non-negative quantity to a multiple of `step` (floor by default)."""
    if step <= 0:
        raise ValueError("step must be positive")
    mode = ROUND_FLOOR if rounding is Rounding.FLOOR else ROUND_HALF_UP
    steps = (qty / step).to_integral_value(rounding=mode)
    return (steps * step).quantize(step) if step < 1 else steps * step


def size(
    sizing: FixedSizing | MultiplierSizing, master_qty: Decimal, step: Decimal
) -> SizingResult:
    """The two modes that need nothing but the master quantity."""
    raw = sizing.qty if isinstance(sizing, FixedSizing) else master_qty * sizing.factor
    return SizingResult(qty=round_to_step(raw, step, sizing.rounding), raw_qty=raw)


def size_for(
    sizing: AnySizing,
    master_qty: Decimal,
    order: OrderMessage,
    context: MasterContext,
    state: FollowerState,
    step: Decimal,
) -> SizingResult | SizingSkip:
    """Raw and rounded quantity for any mode, or why this mode cannot size this order."""
    if isinstance(sizing, FixedSizing | MultiplierSizing):
        return size(sizing, master_qty, step)
    if isinstance(sizing, EquityRatioSizing):
        if not context.master_equity or context.master_equity <= 0 or state.equity is None:
            return SizingSkip("equity_unavailable", {})
        raw = master_qty * state.equity / context.master_equity * sizing.factor
    elif isinstance(sizing, NotionalSizing):
        if context.reference_price is None:
            return SizingSkip("price_unavailable", {})
        raw = sizing.amount / context.reference_price
    else:
        assert isinstance(sizing, RiskPercentSizing)
        if order.stop_price is None:
            return SizingSkip("no_stop_price", {})
        entry = order.limit_price or context.reference_price
        if entry is None:
            return SizingSkip("price_unavailable", {})
        if state.equity is None:
            return SizingSkip("equity_unavailable", {})
        distance = abs(entry - order.stop_price)
        if distance == 0:
            return SizingSkip("zero_risk_distance", {"entry": format_decimal(entry)})
        raw = state.equity * sizing.percent / Decimal(100) / distance
    return SizingResult(qty=round_to_step(raw, step, sizing.rounding), raw_qty=raw)


def excess_over_fraction(
    filled: Decimal, qty: Decimal, fraction: Decimal, step: Decimal
) -> Decimal:
    """What a copy filled beyond `fraction` of its planned `qty` (issue 18: the master canceled
    its own order after filling only that fraction). The copy's target is the fraction of its
    quantity floored to the step, like every size, so a copy never ends above the master's
    fraction; a copy that filled less has no excess (a cancel never opens new exposure)."""
    if filled <= 0 or qty <= 0:
        return Decimal(0)
    fraction = min(max(fraction, Decimal(0)), Decimal(1))
    target = round_to_step(qty * fraction, step)
    return max(filled - target, Decimal(0))
