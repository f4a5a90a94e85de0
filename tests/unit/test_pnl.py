"""P&L maths (replication/pnl.py): average cost, table cases and the cash invariant."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replication.pnl import Fill, position_pnl, replay, total
from schemas.common import Side

B, S = Side.BUY, Side.SELL


def f(side: Side, qty: str, price: str, fee: str | None = None) -> Fill:
    return Fill(side, Decimal(qty), Decimal(price), Decimal(fee) if fee is not None else None)


@pytest.mark.parametrize(
    ("fills", "mark", "position", "average", "realized", "unrealized"),
    [
        # a round trip: buy 10 @ 100, sell 10 @ 110 → +100 realized, flat
        ([f(B, "10", "100"), f(S, "10", "110")], "120", "0", None, "100", "0"),
        # average cost: 10 @ 100 + 10 @ 120 = 20 @ 110; sell 5 @ 130 → 5 * 20
        ([f(B, "10", "100"), f(B, "10", "120"), f(S, "5", "130")], "110", "15", "110", "100", "0"),
        # a short: sell 4 @ 50, buy 4 @ 45 → +20
        ([f(S, "4", "50"), f(B, "4", "45")], "1", "0", None, "20", "0"),
        # crossing zero: long 5 @ 10, sell 8 @ 12 → +10 realized, short 3 opened at 12
        ([f(B, "5", "10"), f(S, "8", "12")], "11", "-3", "12", "10", "3"),
        # an open long at a loss
        ([f(B, "3", "200")], "190", "3", "200", "0", "-30"),
        # fractional quantities (crypto)
        ([f(B, "0.5", "30000"), f(S, "0.2", "31000")], "29000", "0.3", "30000", "200", "-300"),
    ],
)
def test_average_cost_table(
    fills: list[Fill],
    mark: str,
    position: str,
    average: str | None,
    realized: str,
    unrealized: str,
) -> None:
    result = position_pnl([], fills, Decimal(mark))
    assert result.position == Decimal(position)
    assert result.average_cost == (Decimal(average) if average else None)
    assert result.realized == Decimal(realized)
    assert result.unrealized == Decimal(unrealized)
    assert result.fees is None  # no fill reported a fee
    assert result.fills == len(fills)


def test_window_realizes_only_its_own_fills_on_the_earlier_cost_basis() -> None:
    before = [f(B, "10", "100"), f(S, "5", "110")]  # +50 before the window
    window = [f(S, "5", "120")]  # closes the rest at avg 100 → +100
    result = position_pnl(before, window, None)
    assert result.realized == Decimal(100)
    assert result.unrealized is None  # no price known
    assert result.position == 0


def test_fees_are_reported_apart_when_the_broker_reports_them() -> None:
    result = position_pnl([], [f(B, "1", "10", "0.5"), f(S, "1", "11", "0.25")], Decimal(11))
    assert result.realized == Decimal(1)
    assert result.fees == Decimal("0.75")


def test_total_ignores_unknowns() -> None:
    assert total([None, None]) is None
    assert total([Decimal(1), None, Decimal("-3")]) == Decimal(-2)


decimals = st.decimals(min_value=Decimal("0.01"), max_value=Decimal(10_000), places=2)
fills = st.lists(
    st.builds(Fill, st.sampled_from([B, S]), decimals, decimals), min_size=0, max_size=30
)


@given(fills, decimals)
def test_realized_plus_unrealized_is_the_cash_difference_at_the_mark(
    history: list[Fill], mark: Decimal
) -> None:
    book = replay(history)
    cash = -sum(
        (Fraction(x.qty) * (1 if x.side is B else -1) * Fraction(x.price) for x in history),
        Fraction(0),
    )
    assert book.cash == cash
    assert book.realized + book.unrealized(mark) == cash + book.qty * Fraction(mark)
    if book.qty == 0:
        assert book.cost == 0  # flat: nothing left unrealized


@given(fills, fills, decimals)
def test_a_window_splits_realized_exactly(
    before: list[Fill], window: list[Fill], mark: Decimal
) -> None:
    whole = position_pnl([], before + window, mark)
    first = position_pnl([], before, mark)
    split = position_pnl(before, window, mark)
    assert abs(first.realized + split.realized - whole.realized) <= Decimal("2e-8")
    assert split.position == whole.position
