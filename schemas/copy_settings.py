"""Copy settings of a subscription: sizing, caps, filters (API.md, "Copy settings")."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field

from schemas.common import PositiveDecimal, Side, Strict


class Rounding(StrEnum):
    FLOOR = "floor"
    NEAREST = "nearest"


class FixedSizing(Strict):
    mode: Literal["fixed"]
    qty: PositiveDecimal
    rounding: Rounding = Rounding.FLOOR


class MultiplierSizing(Strict):
    mode: Literal["multiplier"]
    factor: PositiveDecimal
    rounding: Rounding = Rounding.FLOOR


Sizing = Annotated[FixedSizing | MultiplierSizing, Field(discriminator="mode")]

# Modes named in API.md that this release does not size yet. A request naming one gets a
# clear 422 instead of being copied with the wrong size.
UNSUPPORTED_SIZING_MODES = frozenset({"equity_ratio", "notional", "risk_percent"})


class OnCap(StrEnum):
    CLAMP = "clamp"
    SKIP = "skip"


class Caps(Strict):
    max_qty: PositiveDecimal | None = None
    on_cap: OnCap = OnCap.CLAMP


# Caps named in API.md that are enforced only once the shared counters land. Accepting them
# silently would promise a protection we do not give, so they are refused for now.
UNSUPPORTED_CAPS = frozenset(
    {"max_notional", "max_position", "max_open_positions", "max_orders_per_day", "daily_loss_limit"}
)


class Filters(Strict):
    symbols_allow: list[Annotated[str, Field(min_length=1, max_length=32)]] | None = None
    symbols_block: list[Annotated[str, Field(min_length=1, max_length=32)]] | None = None
    sides: list[Side] | None = None
    reverse: bool = False
    max_signal_age_ms: Annotated[int, Field(gt=0, le=86_400_000)] | None = None
