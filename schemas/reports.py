"""Bodies of the history pages and the P&L report (API.md, "v1 additions")."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, PlainSerializer

from schemas.api import CopyOut, OrderOut


def _signed(value: Decimal) -> str:
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


# Money can be negative (a loss): a decimal string with an optional minus sign.
SignedDecimalStr = Annotated[Decimal, PlainSerializer(_signed, return_type=str)]


class CopyPage(BaseModel):
    """GET /v1/copies with `cursor` (empty for the first page)."""

    items: list[CopyOut]
    next_cursor: str | None


class OrderPage(BaseModel):
    """GET /v1/orders with `cursor` (empty for the first page)."""

    items: list[OrderOut]
    next_cursor: str | None


class PnlPosition(BaseModel):
    """One position's P&L. A follower's name their subscription and master; a master's are
    aggregates over its followers (`followers` counts them; no identities, no accounts)."""

    symbol: str
    subscription_id: str | None = None
    master_id: str | None = None
    followers: int | None = None
    position: SignedDecimalStr
    average_cost: SignedDecimalStr | None
    realized: SignedDecimalStr
    unrealized: SignedDecimalStr | None
    fees: SignedDecimalStr | None
    mark_price: SignedDecimalStr | None
    fills: int


class PnlTotals(BaseModel):
    realized: SignedDecimalStr
    unrealized: SignedDecimalStr | None
    fees: SignedDecimalStr | None


class PnlOut(BaseModel):
    """realized: over [since, until) on the cost basis of every earlier fill; unrealized: the
    position at `until` marked at the broker's last price now (null without a price); fees:
    null when the broker reports none."""

    role: Literal["follower", "master"]
    method: Literal["average_cost"] = "average_cost"
    currency: Literal["account"] = "account"
    since: datetime | None
    until: datetime | None
    positions: list[PnlPosition]
    totals: PnlTotals
