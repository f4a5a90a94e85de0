"""Profit and loss of one position from its fills: average cost, exact arithmetic, no I/O.

Method: **average cost**. A fill that grows the position (or opens it) adds to its cost basis;
a fill that reduces it realizes `closed qty * (price - average cost)` (sign-adjusted for
shorts) and leaves the average cost of what remains unchanged; a fill that crosses zero closes
the old position and opens the rest at the fill's price. Fees are kept apart (never folded into
the cost basis), so `net = realized + unrealized - fees`.

Arithmetic is exact (fractions), so the invariant holds with equality:
`realized + unrealized == cash + position * mark`, where cash is -Σ(signed qty * price).
Results are rounded to `PLACES` decimal places only when reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

from schemas.common import Side

PLACES = Decimal("1e-8")


@dataclass(frozen=True)
class Fill:
    """One execution (or one order's fills at their average price)."""

    side: Side
    qty: Decimal
    price: Decimal
    fee: Decimal | None = None  # None: the broker does not report fees


@dataclass(frozen=True)
class Book:
    """A position's exact state: signed quantity, signed cost basis, realized P&L, fees."""

    qty: Fraction = Fraction(0)
    cost: Fraction = Fraction(0)
    realized: Fraction = Fraction(0)
    fees: Fraction = Fraction(0)
    fees_reported: bool = False
    cash: Fraction = Fraction(0)  # -Σ signed qty * price (fees apart)

    def unrealized(self, mark: Decimal) -> Fraction:
        return self.qty * Fraction(mark) - self.cost


def _sign(x: Fraction) -> int:
    return (x > 0) - (x < 0)


def apply(book: Book, fill: Fill) -> Book:
    """The book after one fill."""
    signed = Fraction(fill.qty) if fill.side is Side.BUY else -Fraction(fill.qty)
    price = Fraction(fill.price)
    fees = book.fees + Fraction(fill.fee or 0)
    reported = book.fees_reported or fill.fee is not None
    cash = book.cash - signed * price
    qty = book.qty + signed
    if book.qty == 0 or _sign(book.qty) == _sign(signed):
        return Book(qty, book.cost + signed * price, book.realized, fees, reported, cash)
    average = book.cost / book.qty
    closed = min(abs(signed), abs(book.qty))
    realized = book.realized + closed * (price - average) * _sign(book.qty)
    if _sign(qty) == _sign(book.qty):
        cost = average * qty  # reduced: the rest keeps its average cost
    else:
        cost = qty * price  # closed (qty 0 → cost 0) or crossed: the rest opens at the price
    return Book(qty, cost, realized, fees, reported, cash)


def replay(fills: Iterable[Fill], book: Book | None = None) -> Book:
    result = book or Book()
    for fill in fills:
        result = apply(result, fill)
    return result


def to_decimal(value: Fraction) -> Decimal:
    """Round an exact value to PLACES for reporting."""
    exact = Decimal(value.numerator) / Decimal(value.denominator)
    return exact.quantize(PLACES, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True)
class PositionPnl:
    """What one position reports over a window: realized in the window, the position at its
    end, unrealized at `mark` (None without a price), fees (None when none were reported)."""

    position: Decimal
    average_cost: Decimal | None
    realized: Decimal
    unrealized: Decimal | None
    fees: Decimal | None
    fills: int


def position_pnl(
    before: Sequence[Fill], window: Sequence[Fill], mark: Decimal | None
) -> PositionPnl:
    """P&L over a window: `before` builds the cost basis (fills earlier than the window),
    `window` is what the window realizes; unrealized is the end position at `mark`."""
    start = replay(before)
    end = replay(window, start)
    fees = end.fees - start.fees
    return PositionPnl(
        position=to_decimal(end.qty),
        average_cost=to_decimal(end.cost / end.qty) if end.qty else None,
        realized=to_decimal(end.realized - start.realized),
        unrealized=to_decimal(end.unrealized(mark)) if mark is not None else None,
        fees=to_decimal(fees) if any(f.fee is not None for f in window) else None,
        fills=len(window),
    )


def total(values: Iterable[Decimal | None]) -> Decimal | None:
    """Sum of the known values; None when none is known."""
    known = [v for v in values if v is not None]
    return sum(known, Decimal(0)) if known else None
