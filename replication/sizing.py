"""Sizing: the follower quantity of one leg, before caps. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal

from schemas.copy_settings import FixedSizing, MultiplierSizing, Rounding


@dataclass(frozen=True)
class SizingResult:
    qty: Decimal
    raw_qty: Decimal


def round_to_step(qty: Decimal, step: Decimal, rounding: Rounding) -> Decimal:
    """Round a non-negative quantity to a multiple of `step` (floor by default)."""
    if step <= 0:
        raise ValueError("step must be positive")
    mode = ROUND_FLOOR if rounding is Rounding.FLOOR else ROUND_HALF_UP
    steps = (qty / step).to_integral_value(rounding=mode)
    return (steps * step).quantize(step) if step < 1 else steps * step


def size(
    sizing: FixedSizing | MultiplierSizing, master_qty: Decimal, step: Decimal
) -> SizingResult:
    """Follower quantity for a master quantity under one sizing mode."""
    if isinstance(sizing, FixedSizing):
        raw = sizing.qty
    else:
        raw = master_qty * sizing.factor
    return SizingResult(qty=round_to_step(raw, step, sizing.rounding), raw_qty=raw)
