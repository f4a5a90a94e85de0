from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replication.model import FollowerTarget
from replication.plan import leg_id, plan
from replication.sizing import round_to_step, size
from replication.state import LegStatus
from schemas.common import OrderType, Side, TimeInForce
from schemas.copy_settings import Caps, Filters, FixedSizing, MultiplierSizing, OnCap, Rounding
from schemas.messages import OrderMessage

NOW = datetime(2026, 11, 22, 15, 0, tzinfo=UTC)
D = Decimal


def order(
    qty: str = "10", side: Side = Side.BUY, symbol: str = "AAPL", age_ms: int = 0
) -> OrderMessage:
    return OrderMessage(
        order_id="11111111-1111-1111-1111-111111111111",
        master_id="m",
        account_id="ma",
        client_order_id="c",
        symbol=symbol,
        side=side,
        qty=D(qty),
        type=OrderType.MARKET,
        time_in_force=TimeInForce.DAY,
        created_at=NOW - timedelta(milliseconds=age_ms),
    )


def target(
    sizing: FixedSizing | MultiplierSizing,
    account: str = "a1",
    caps: Caps | None = None,
    filters: Filters | None = None,
    step: str = "1",
    **flags: bool,
) -> FollowerTarget:
    return FollowerTarget(
        subscription_id="s-" + account,
        follower_id="f-" + account,
        account_id=account,
        broker="sim",
        sizing=sizing,
        caps=caps or Caps(),
        filters=filters or Filters(),
        qty_step=D(step),
        **flags,
    )


fixed = lambda q, r=Rounding.FLOOR: FixedSizing(mode="fixed", qty=D(q), rounding=r)  # noqa: E731
mult = lambda k, r=Rounding.FLOOR: MultiplierSizing(mode="multiplier", factor=D(k), rounding=r)  # noqa: E731


@pytest.mark.parametrize(
    "qty,step,rounding,expected",
    [
        ("7.9", "1", Rounding.FLOOR, "7"),
        ("7.5", "1", Rounding.NEAREST, "8"),
        ("7.49", "1", Rounding.NEAREST, "7"),
        ("0.987654", "0.001", Rounding.FLOOR, "0.987"),
        ("0.9875", "0.001", Rounding.NEAREST, "0.988"),
        ("12", "5", Rounding.FLOOR, "10"),
        ("0.4", "1", Rounding.FLOOR, "0"),
    ],
)
def test_round_to_step(qty: str, step: str, rounding: Rounding, expected: str) -> None:
    assert round_to_step(D(qty), D(step), rounding) == D(expected)


@pytest.mark.parametrize(
    "sizing,master_qty,expected",
    [
        (fixed("5"), "100", "5"),
        (fixed("5"), "1", "5"),
        (fixed("2.7"), "1", "2"),
        (fixed("2.7", Rounding.NEAREST), "1", "3"),
        (mult("2"), "10", "20"),
        (mult("0.5"), "7", "3"),
        (mult("0.5", Rounding.NEAREST), "7", "4"),
        (mult("0.01"), "10", "0"),
    ],
)
def test_size(sizing: FixedSizing | MultiplierSizing, master_qty: str, expected: str) -> None:
    assert size(sizing, D(master_qty), D(1)).qty == D(expected)


@pytest.mark.parametrize(
    "sizing,caps,expected_status,expected_qty,expected_reason",
    [
        (mult("2"), Caps(max_qty=D(15)), LegStatus.PLANNED, "15", "clamped_max_qty"),
        (mult("2"), Caps(max_qty=D(15), on_cap=OnCap.SKIP), LegStatus.SKIPPED, None, "cap_max_qty"),
        (mult("2"), Caps(max_qty=D(20)), LegStatus.PLANNED, "20", None),
        (mult("2"), Caps(max_qty=D("14.5")), LegStatus.PLANNED, "14", "clamped_max_qty"),
        (mult("0.01"), Caps(), LegStatus.SKIPPED, None, "below_min_qty"),
        (mult("2"), Caps(max_qty=D("0.5")), LegStatus.SKIPPED, None, "below_min_qty"),
    ],
)
def test_caps(
    sizing: MultiplierSizing,
    caps: Caps,
    expected_status: LegStatus,
    expected_qty: str | None,
    expected_reason: str | None,
) -> None:
    [leg] = plan(order("10"), [target(sizing, caps=caps)], NOW)
    assert leg.status is expected_status
    assert leg.qty == (None if expected_qty is None else D(expected_qty))
    assert leg.reason == expected_reason


@pytest.mark.parametrize(
    "filters,flags,the_order,reason,side",
    [
        (Filters(), {"paused": True}, order(), "paused", Side.BUY),
        (Filters(), {"account_halted": True}, order(), "halted", Side.BUY),
        (Filters(symbols_allow=["MSFT"]), {}, order(), "symbol_not_allowed", Side.BUY),
        (Filters(symbols_block=["AAPL"]), {}, order(), "symbol_blocked", Side.BUY),
        (Filters(sides=[Side.SELL]), {}, order(), "side_filtered", Side.BUY),
        (Filters(max_signal_age_ms=500), {}, order(age_ms=900), "stale_signal", Side.BUY),
        (Filters(max_signal_age_ms=500), {}, order(age_ms=100), None, Side.BUY),
        (Filters(reverse=True), {}, order(), None, Side.SELL),
        (Filters(reverse=True, sides=[Side.SELL]), {}, order(), None, Side.SELL),
    ],
)
def test_filters(
    filters: Filters,
    flags: dict[str, bool],
    the_order: OrderMessage,
    reason: str | None,
    side: Side,
) -> None:
    [leg] = plan(the_order, [target(fixed("1"), filters=filters, **flags)], NOW)
    assert leg.reason == reason
    assert leg.status is (LegStatus.SKIPPED if reason else LegStatus.PLANNED)
    assert leg.side is side


def test_one_leg_per_account_with_deterministic_ids() -> None:
    from dataclasses import replace

    duplicate = replace(target(fixed("2"), account="a"), subscription_id="s-a2")
    targets = [target(fixed("1"), account="b"), duplicate, target(fixed("1"), account="a")]
    legs = plan(order(), targets, NOW)
    assert legs[0].subscription_id == "s-a" and legs[0].qty == 1
    assert [leg.account_id for leg in legs] == ["a", "b"]
    assert legs[0].leg_id == leg_id(legs[0].order_id, "a", "open")
    assert plan(order(), list(reversed(targets)), NOW) == legs


qtys = st.decimals(min_value=D("0.001"), max_value=D("100000"), places=3)
factors = st.decimals(min_value=D("0.01"), max_value=D("50"), places=2)


@given(
    qtys,
    factors,
    st.one_of(st.none(), qtys),
    st.sampled_from(list(OnCap)),
    st.sampled_from(list(Rounding)),
    st.sampled_from(["1", "0.1", "0.001"]),
)
def test_a_planned_leg_never_exceeds_max_qty(
    master_qty: Decimal,
    factor: Decimal,
    max_qty: Decimal | None,
    on_cap: OnCap,
    rounding: Rounding,
    step: str,
) -> None:
    caps = Caps(max_qty=max_qty, on_cap=on_cap)
    [leg] = plan(
        order(str(master_qty)), [target(mult(str(factor), rounding), caps=caps, step=step)], NOW
    )
    if leg.status is LegStatus.PLANNED:
        assert leg.qty is not None and leg.qty > 0
        assert leg.qty % D(step) == 0
        if max_qty is not None:
            assert leg.qty <= max_qty
    else:
        assert leg.qty is None and leg.reason


@given(qtys, qtys, factors)
def test_sizing_is_monotone_in_master_qty(a: Decimal, b: Decimal, factor: Decimal) -> None:
    low, high = sorted((a, b))
    s = mult(str(factor))
    assert size(s, low, D(1)).qty <= size(s, high, D(1)).qty
