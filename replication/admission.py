"""Would the master's broker take this order? The rules a broker applies at placement, checked
at ingest so that a master hears an actionable 422 before anything is copied (issue 18).
Pure: the caller brings the instrument, the buying power and the price it fetched."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from replication.model import Instrument
from schemas.common import Side, TimeInForce, format_decimal


@dataclass(frozen=True)
class Refusal:
    code: str
    message: str


def refusal(
    qty: Decimal,
    side: Side,
    time_in_force: TimeInForce,
    instrument: Instrument,
    buying_power: Decimal | None,
    price: Decimal | None,
) -> Refusal | None:
    """The first rule this order breaks at the master's broker, or None. A fact that could not
    be read (None) is not held against the order: the broker itself still decides."""
    symbol = instrument.symbol
    if not instrument.tradable:
        return Refusal("not_tradable", f"{symbol} is not tradable at the master's broker")
    fractional = qty != qty.to_integral_value()
    if fractional and instrument.qty_step == 1:
        return Refusal(
            "fractional_not_supported", f"{symbol} trades in whole units at the master's broker"
        )
    if qty % instrument.qty_step != 0:
        step = format_decimal(instrument.qty_step)
        return Refusal("qty_step", f"qty must be a multiple of {step} for {symbol}")
    if qty < instrument.min_qty:
        minimum = format_decimal(instrument.min_qty)
        return Refusal("below_min_qty", f"qty must be at least {minimum} for {symbol}")
    if fractional and time_in_force is not TimeInForce.DAY:
        return Refusal("fractional_needs_day", "fractional orders must be day orders")
    if side is Side.BUY and buying_power is not None and price is not None:
        needed = qty * price
        if needed > buying_power:
            return Refusal(
                "insufficient_buying_power",
                f"needs about {format_decimal(needed)}, the account has "
                f"{format_decimal(buying_power)}",
            )
    return None
