"""Copy settings of a subscription: sizing, caps, filters (API.md, "Copy settings")."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field

from schemas.common import PositiveDecimal, Side, Strict, StrictBool, StrictInt, Text


class Rounding(StrEnum):
    FLOOR = "floor"
    NEAREST = "nearest"


class FixedSizing(Strict):
    """Always the same quantity."""

    mode: Literal["fixed"]
    qty: PositiveDecimal
    rounding: Rounding = Rounding.FLOOR


class MultiplierSizing(Strict):
    """Master quantity * factor."""

    mode: Literal["multiplier"]
    factor: PositiveDecimal
    rounding: Rounding = Rounding.FLOOR


class EquityRatioSizing(Strict):
    """Master quantity * follower equity / master equity * factor."""

    mode: Literal["equity_ratio"]
    factor: PositiveDecimal = Decimal("1")
    rounding: Rounding = Rounding.FLOOR


class NotionalSizing(Strict):
    """A cash amount per order: amount / reference price (limit price, else the last price)."""

    mode: Literal["notional"]
    amount: PositiveDecimal
    rounding: Rounding = Rounding.FLOOR


class RiskPercentSizing(Strict):
    """Risk `percent` of follower equity between entry and the master's stop price."""

    mode: Literal["risk_percent"]
    percent: Annotated[PositiveDecimal, Field(le=100)]
    rounding: Rounding = Rounding.FLOOR


Sizing = Annotated[
    FixedSizing | MultiplierSizing | EquityRatioSizing | NotionalSizing | RiskPercentSizing,
    Field(discriminator="mode"),
]
AnySizing = FixedSizing | MultiplierSizing | EquityRatioSizing | NotionalSizing | RiskPercentSizing


class OnCap(StrEnum):
    CLAMP = "clamp"
    SKIP = "skip"


class Caps(Strict):
    max_qty: PositiveDecimal | None = None
    max_notional: PositiveDecimal | None = None
    max_position: PositiveDecimal | None = None
    max_open_positions: Annotated[StrictInt, Field(ge=1, le=10_000)] | None = None
    max_orders_per_day: Annotated[StrictInt, Field(ge=1, le=1_000_000)] | None = None
    daily_loss_limit: PositiveDecimal | None = None
    on_cap: OnCap = OnCap.CLAMP


class Filters(Strict):
    symbols_allow: (
        Annotated[list[Annotated[Text, Field(min_length=1, max_length=32)]], Field(max_length=200)]
        | None
    ) = None
    symbols_block: (
        Annotated[list[Annotated[Text, Field(min_length=1, max_length=32)]], Field(max_length=200)]
        | None
    ) = None
    sides: Annotated[list[Side], Field(max_length=2)] | None = None
    reverse: StrictBool = False
    max_signal_age_ms: Annotated[StrictInt, Field(gt=0, le=86_400_000)] | None = None
    # A copy the broker did not take is retried (backoff with jitter) until this many seconds
    # after the master's signal (max_signal_age_ms wins when set), then it ends `expired`.
    copy_deadline_s: Annotated[StrictInt, Field(ge=1, le=86_400)] = 300
