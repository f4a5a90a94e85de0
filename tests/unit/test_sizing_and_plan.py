"""Copy semantics, table by table, with hand-computed expectations; then Hypothesis properties."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replication.model import FollowerState, FollowerTarget, Instrument, MasterContext
from replication.plan import closable, leg_id, master_leg, master_split, plan
from replication.sizing import round_to_step, size
from replication.state import LegStatus
from schemas.common import OrderType, Side, TimeInForce
from schemas.copy_settings import (
    AnySizing,
    Caps,
    EquityRatioSizing,
    Filters,
    FixedSizing,
    MultiplierSizing,
    NotionalSizing,
    OnCap,
    RiskPercentSizing,
    Rounding,
)
from schemas.messages import OrderMessage

NOW = datetime(2026, 11, 22, 15, 0, tzinfo=UTC)
D = Decimal


def order(
    qty: str = "10",
    side: Side = Side.BUY,
    symbol: str = "AAPL",
    age_ms: int = 0,
    type_: OrderType = OrderType.MARKET,
    limit: str | None = None,
    stop: str | None = None,
) -> OrderMessage:
    return OrderMessage(
        order_id="11111111-1111-1111-1111-111111111111",
        master_id="m",
        account_id="ma",
        client_order_id="c",
        symbol=symbol,
        side=side,
        qty=D(qty),
        type=type_,
        limit_price=None if limit is None else D(limit),
        stop_price=None if stop is None else D(stop),
        time_in_force=TimeInForce.DAY,
        created_at=NOW - timedelta(milliseconds=age_ms),
    )


def target(
    sizing: AnySizing,
    account: str = "a1",
    caps: Caps | None = None,
    filters: Filters | None = None,
    step: str = "1",
    min_qty: str = "0",
    min_notional: str = "0",
    state: FollowerState | None = None,
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
        instrument=Instrument(
            "AAPL", qty_step=D(step), min_qty=D(min_qty), min_notional=D(min_notional)
        ),
        state=state or FollowerState(),
        **flags,
    )


def fixed(q: str, r: Rounding = Rounding.FLOOR) -> FixedSizing:
    return FixedSizing(mode="fixed", qty=D(q), rounding=r)


def mult(k: str, r: Rounding = Rounding.FLOOR) -> MultiplierSizing:
    return MultiplierSizing(mode="multiplier", factor=D(k), rounding=r)


def one(
    the_order: OrderMessage, the_target: FollowerTarget, context: MasterContext | None = None
) -> Any:
    [leg] = plan(the_order, [the_target], NOW, context)
    return leg


# rounding and the simple modes ------------------------------------------------------------
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


# every mode -------------------------------------------------------------------------------
EQUITY = MasterContext(master_equity=D(175_000), reference_price=D(50), price_source="last_price")


@pytest.mark.parametrize(
    "follower_equity,expected",
    [("25000", "100"), ("50000", "200"), ("100000", "400")],  # IBKR: 700 over 25k/50k/100k
)
def test_equity_ratio_ibkr_allocation(follower_equity: str, expected: str) -> None:
    leg = one(
        order("700"),
        target(
            EquityRatioSizing(mode="equity_ratio"), state=FollowerState(equity=D(follower_equity))
        ),
        EQUITY,
    )
    assert leg.qty == D(expected) and leg.status is LegStatus.PLANNED
    assert leg.details["master_equity"] == "175000"
    assert leg.details["follower_equity"] == follower_equity


@pytest.mark.parametrize(
    "sizing,the_order,context,state,expected_qty,expected_reason",
    [
        # equity_ratio: 10 * 30k / 100k * 2 = 6; no equity → skipped
        (
            EquityRatioSizing(mode="equity_ratio", factor=D(2)),
            order("10"),
            MasterContext(master_equity=D(100_000)),
            FollowerState(equity=D(30_000)),
            "6",
            None,
        ),
        (
            EquityRatioSizing(mode="equity_ratio"),
            order("10"),
            MasterContext(master_equity=None),
            FollowerState(equity=D(30_000)),
            None,
            "equity_unavailable",
        ),
        # notional: 1000 / 150 = 6.67 → 6 (floor), 7 (nearest); limit price wins over last price
        (
            NotionalSizing(mode="notional", amount=D(1000)),
            order("1"),
            MasterContext(reference_price=D(150)),
            FollowerState(),
            "6",
            None,
        ),
        (
            NotionalSizing(mode="notional", amount=D(1000), rounding=Rounding.NEAREST),
            order("1"),
            MasterContext(reference_price=D(150)),
            FollowerState(),
            "7",
            None,
        ),
        (
            NotionalSizing(mode="notional", amount=D(1000)),
            order("1", type_=OrderType.LIMIT, limit="200"),
            MasterContext(reference_price=D(200), price_source="limit_price"),
            FollowerState(),
            "5",
            None,
        ),
        (
            NotionalSizing(mode="notional", amount=D(1000)),
            order("1"),
            MasterContext(),
            FollowerState(),
            None,
            "price_unavailable",
        ),
        (
            NotionalSizing(mode="notional", amount=D(100)),
            order("1"),
            MasterContext(reference_price=D(150)),
            FollowerState(),
            None,
            "below_min_qty",
        ),
        # risk_percent: 50k * 1% / |100 - 95| = 100; no stop → skipped
        (
            RiskPercentSizing(mode="risk_percent", percent=D(1)),
            order("1", type_=OrderType.STOP_LIMIT, limit="100", stop="95"),
            MasterContext(reference_price=D(100)),
            FollowerState(equity=D(50_000)),
            "100",
            None,
        ),
        (
            RiskPercentSizing(mode="risk_percent", percent=D(1)),
            order("1", type_=OrderType.STOP, stop="95"),
            MasterContext(reference_price=D(97)),
            FollowerState(equity=D(50_000)),
            "250",
            None,
        ),
        (
            RiskPercentSizing(mode="risk_percent", percent=D(1)),
            order("1"),
            MasterContext(reference_price=D(100)),
            FollowerState(equity=D(50_000)),
            None,
            "no_stop_price",
        ),
        (
            RiskPercentSizing(mode="risk_percent", percent=D(1)),
            order("1", type_=OrderType.STOP, stop="100"),
            MasterContext(reference_price=D(100)),
            FollowerState(equity=D(50_000)),
            None,
            "zero_risk_distance",
        ),
    ],
)
def test_modes(
    sizing: AnySizing,
    the_order: OrderMessage,
    context: MasterContext,
    state: FollowerState,
    expected_qty: str | None,
    expected_reason: str | None,
) -> None:
    leg = one(the_order, target(sizing, state=state), context)
    assert leg.qty == (None if expected_qty is None else D(expected_qty))
    assert leg.reason == expected_reason
    assert leg.status is (LegStatus.PLANNED if expected_qty else LegStatus.SKIPPED)


def test_fractional_instrument_and_minimums() -> None:
    notional = NotionalSizing(mode="notional", amount=D(1000))
    ctx = MasterContext(reference_price=D(300))
    leg = one(order("1"), target(notional, step="0.0001"), ctx)
    assert leg.qty == D("3.3333")
    leg = one(order("1"), target(fixed("0.5"), step="0.1", min_qty="1"), ctx)
    assert (leg.status, leg.reason) == (LegStatus.SKIPPED, "below_min_qty")
    leg = one(order("1"), target(fixed("0.5"), step="0.1", min_notional="200"), ctx)
    assert (leg.status, leg.reason) == (LegStatus.SKIPPED, "below_min_notional")
    leg = one(order("1"), target(fixed("0.7"), step="0.1", min_notional="200"), ctx)
    assert leg.qty == D("0.7")


# caps -------------------------------------------------------------------------------------
PRICE = MasterContext(reference_price=D(100), price_source="last_price")


@pytest.mark.parametrize(
    "sizing,caps,state,expected_qty,expected_reason",
    [
        (mult("2"), Caps(max_qty=D(15)), FollowerState(), "15", "clamped_max_qty"),
        (mult("2"), Caps(max_qty=D(15), on_cap=OnCap.SKIP), FollowerState(), None, "cap_max_qty"),
        (mult("2"), Caps(max_qty=D(20)), FollowerState(), "20", None),
        (mult("2"), Caps(max_qty=D("14.5")), FollowerState(), "14", "clamped_max_qty"),
        (mult("0.01"), Caps(), FollowerState(), None, "below_min_qty"),
        (mult("2"), Caps(max_qty=D("0.5")), FollowerState(), None, "cap_max_qty"),
        # max_notional at price 100: 1250 → 12
        (mult("2"), Caps(max_notional=D(1250)), FollowerState(), "12", "clamped_max_notional"),
        (
            mult("2"),
            Caps(max_notional=D(1250), on_cap=OnCap.SKIP),
            FollowerState(),
            None,
            "cap_max_notional",
        ),
        # max_position: worst of broker and ledger counts
        (
            mult("2"),
            Caps(max_position=D(25)),
            FollowerState(broker_position=D(10)),
            "15",
            "clamped_max_position",
        ),
        (
            mult("2"),
            Caps(max_position=D(25)),
            FollowerState(copy_position=D(20)),
            "5",
            "clamped_max_position",
        ),
        (
            mult("2"),
            Caps(max_position=D(25)),
            FollowerState(copy_position=D(25)),
            None,
            "cap_max_position",
        ),
        (mult("2"), Caps(max_position=D(25)), FollowerState(broker_position=D(-30)), "20", None),
        # max_open_positions: a new symbol when the account already holds two others
        (
            mult("1"),
            Caps(max_open_positions=2),
            FollowerState(open_symbols=frozenset({"X", "Y"})),
            None,
            "cap_max_open_positions",
        ),
        (
            mult("1"),
            Caps(max_open_positions=2),
            FollowerState(broker_position=D(3), open_symbols=frozenset({"AAPL", "Y"})),
            "10",
            None,
        ),
        (
            mult("1"),
            Caps(max_open_positions=3),
            FollowerState(open_symbols=frozenset({"X", "Y"})),
            "10",
            None,
        ),
        # max_orders_per_day
        (
            mult("1"),
            Caps(max_orders_per_day=3),
            FollowerState(orders_today=3),
            None,
            "cap_max_orders_per_day",
        ),
        (mult("1"), Caps(max_orders_per_day=3), FollowerState(orders_today=2), "10", None),
        # daily loss limit: close-only once the day's loss reaches it
        (
            mult("1"),
            Caps(daily_loss_limit=D(500)),
            FollowerState(day_pnl=D(-500)),
            None,
            "daily_loss_limit",
        ),
        (mult("1"), Caps(daily_loss_limit=D(500)), FollowerState(day_pnl=D(-499)), "10", None),
        (
            mult("1"),
            Caps(daily_loss_limit=D(500)),
            FollowerState(day_pnl=None),
            None,
            "pnl_unavailable",
        ),
        # several caps: the tightest wins
        (
            mult("3"),
            Caps(max_qty=D(25), max_notional=D(2000), max_position=D(50)),
            FollowerState(copy_position=D(35)),
            "15",
            "clamped_max_position",
        ),
    ],
)
def test_caps(
    sizing: MultiplierSizing,
    caps: Caps,
    state: FollowerState,
    expected_qty: str | None,
    expected_reason: str | None,
) -> None:
    leg = one(order("10"), target(sizing, caps=caps, state=state), PRICE)
    assert leg.qty == (None if expected_qty is None else D(expected_qty))
    assert leg.reason == expected_reason
    assert leg.status is (LegStatus.PLANNED if expected_qty else LegStatus.SKIPPED)


def test_max_notional_without_a_price_skips() -> None:
    leg = one(order("10"), target(mult("1"), caps=Caps(max_notional=D(100))), MasterContext())
    assert (leg.status, leg.reason) == (LegStatus.SKIPPED, "price_unavailable")


# filters and halts ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "filters,flags,context,the_order,reason,side",
    [
        (Filters(), {"paused": True}, MasterContext(), order(), "paused", Side.BUY),
        (Filters(), {"account_halted": True}, MasterContext(), order(), "halted", Side.BUY),
        (Filters(), {}, MasterContext(global_halt=True), order(), "global_halt", Side.BUY),
        (Filters(), {}, MasterContext(master_halted=True), order(), "master_halted", Side.BUY),
        (
            Filters(symbols_allow=["MSFT"]),
            {},
            MasterContext(),
            order(),
            "symbol_not_allowed",
            Side.BUY,
        ),
        (Filters(symbols_block=["AAPL"]), {}, MasterContext(), order(), "symbol_blocked", Side.BUY),
        (Filters(sides=[Side.SELL]), {}, MasterContext(), order(), "side_filtered", Side.BUY),
        (
            Filters(max_signal_age_ms=500),
            {},
            MasterContext(),
            order(age_ms=900),
            "stale_signal",
            Side.BUY,
        ),
        (Filters(max_signal_age_ms=500), {}, MasterContext(), order(age_ms=100), None, Side.BUY),
        (Filters(reverse=True), {}, MasterContext(), order(), None, Side.SELL),
        (Filters(reverse=True, sides=[Side.SELL]), {}, MasterContext(), order(), None, Side.SELL),
    ],
)
def test_filters(
    filters: Filters,
    flags: dict[str, bool],
    context: MasterContext,
    the_order: OrderMessage,
    reason: str | None,
    side: Side,
) -> None:
    leg = one(the_order, target(fixed("1"), filters=filters, **flags), context)
    assert leg.reason == reason
    assert leg.status is (LegStatus.SKIPPED if reason else LegStatus.PLANNED)
    assert leg.side is side


# position-aware exits ---------------------------------------------------------------------
def held(copy: str, broker: str | None = None) -> FollowerState:
    return FollowerState(copy_position=D(copy), broker_position=D(broker if broker else copy))


@pytest.mark.parametrize(
    "master_position,the_order,state,sizing,expected_qty,expected_side,expected_reason,reverse",
    [
        # master sells half of 100: follower with 30 sells 15, whatever its sizing says
        ("100", order("50", Side.SELL), held("30"), fixed("7"), "15", Side.SELL, None, False),
        # odd fractions floor: 1/3 of 10 → 3
        ("30", order("10", Side.SELL), held("10"), mult("1"), "3", Side.SELL, None, False),
        # a full close closes everything the follower holds, drift included
        ("100", order("100", Side.SELL), held("37"), mult("1"), "37", Side.SELL, None, False),
        # the follower sold some by hand: close only what the broker still holds
        ("100", order("100", Side.SELL), held("37", "20"), mult("1"), "20", Side.SELL, None, False),
        # the follower never copied the entry: nothing to close
        (
            "100",
            order("50", Side.SELL),
            held("0"),
            mult("1"),
            None,
            Side.SELL,
            "no_position",
            False,
        ),
        # short positions close with buys
        ("-40", order("10", Side.BUY), held("-8"), mult("1"), "2", Side.BUY, None, False),
        # master flips from +10 to -5: follower closes its 4 and opens 5 * 2 short
        ("10", order("15", Side.SELL), held("4"), mult("2"), "14", Side.SELL, None, False),
        # an order that adds to the master's position is an opening, sized normally
        ("100", order("10", Side.BUY), held("30"), mult("2"), "20", Side.BUY, None, False),
        # reverse copy: master closes a long, the reversed follower closes its short
        ("100", order("50", Side.SELL), held("-30"), mult("1"), "15", Side.BUY, None, True),
    ],
)
def test_position_aware_exits(
    master_position: str,
    the_order: OrderMessage,
    state: FollowerState,
    sizing: AnySizing,
    expected_qty: str | None,
    expected_side: Side,
    expected_reason: str | None,
    reverse: bool,
) -> None:
    filters = Filters(reverse=reverse)
    leg = one(
        the_order,
        target(sizing, state=state, filters=filters),
        MasterContext(master_position=D(master_position)),
    )
    assert leg.qty == (None if expected_qty is None else D(expected_qty))
    assert leg.side is expected_side
    assert leg.reason == expected_reason


def test_caps_never_block_a_close() -> None:
    caps = Caps(max_qty=D(1), max_orders_per_day=1, daily_loss_limit=D(10), max_position=D(1))
    state = FollowerState(
        copy_position=D(30), broker_position=D(30), orders_today=5, day_pnl=D(-1000)
    )
    leg = one(
        order("100", Side.SELL),
        target(mult("1"), caps=caps, state=state),
        MasterContext(master_position=D(100)),
    )
    assert (leg.qty, leg.side, leg.status) == (D(30), Side.SELL, LegStatus.PLANNED)


def test_master_split() -> None:
    assert master_split(order("50", Side.SELL), D(100)) == (D("0.5"), D(0))
    assert master_split(order("150", Side.SELL), D(100)) == (D(1), D(50))
    assert master_split(order("50", Side.BUY), D(100)) == (D(0), D(50))
    assert master_split(order("50", Side.SELL), D(0)) == (D(0), D(50))


# identity ---------------------------------------------------------------------------------
def test_one_leg_per_account_with_deterministic_ids() -> None:
    duplicate = replace(target(fixed("2"), account="a"), subscription_id="s-a2")
    targets = [target(fixed("1"), account="b"), duplicate, target(fixed("1"), account="a")]
    legs = plan(order(), targets, NOW)
    assert legs[0].subscription_id == "s-a" and legs[0].qty == 1
    assert [leg.account_id for leg in legs] == ["a", "b"]
    assert legs[0].leg_id == leg_id(legs[0].order_id, "a", "open")
    assert plan(order(), list(reversed(targets)), NOW) == legs


def test_master_leg() -> None:
    leg = master_leg(order("10"), "sim")
    assert leg.action == "master" and leg.qty == D(10) and leg.account_id == "ma"
    assert (
        leg.client_order_id
        != plan(order(), [target(fixed("1"), account="ma")], NOW)[0].client_order_id
    )


# properties -------------------------------------------------------------------------------
qtys = st.decimals(min_value=D("0.001"), max_value=D("100000"), places=3)
small = st.decimals(min_value=D("-1000"), max_value=D("1000"), places=2)
factors = st.decimals(min_value=D("0.01"), max_value=D("50"), places=2)
caps_strategy = st.builds(
    Caps,
    max_qty=st.one_of(st.none(), qtys),
    max_notional=st.one_of(st.none(), qtys),
    max_position=st.one_of(st.none(), qtys),
    on_cap=st.sampled_from(list(OnCap)),
)
states = st.builds(
    FollowerState, broker_position=small, copy_position=small, equity=st.one_of(st.none(), qtys)
)
contexts = st.builds(
    MasterContext,
    reference_price=st.one_of(st.none(), qtys),
    master_position=small,
    master_equity=st.one_of(st.none(), qtys),
)


@given(
    qtys,
    factors,
    caps_strategy,
    st.sampled_from(list(Rounding)),
    st.sampled_from(["1", "0.1", "0.001"]),
    states,
    contexts,
    st.sampled_from(list(Side)),
)
def test_a_planned_leg_never_exceeds_a_cap_nor_flips_a_position(
    master_qty: Decimal,
    factor: Decimal,
    caps: Caps,
    rounding: Rounding,
    step: str,
    state: FollowerState,
    context: MasterContext,
    side: Side,
) -> None:
    the_order = order(str(master_qty), side)
    leg = one(
        the_order, target(mult(str(factor), rounding), caps=caps, step=step, state=state), context
    )
    if leg.status is not LegStatus.PLANNED:
        assert leg.qty is None and leg.reason
        return
    assert leg.qty is not None and leg.qty > 0
    _fraction, master_opening = master_split(the_order, context.master_position)
    closing = D(leg.details.get("close_qty", "0"))
    opening = leg.qty - closing
    assert closing <= closable(state, side)  # exits never sell what is not held
    if master_opening == 0:
        assert opening == 0  # a pure exit never opens the other side
    if opening > 0:
        if caps.max_qty is not None:
            assert opening <= caps.max_qty
        if caps.max_notional is not None:
            assert context.reference_price is not None
            assert opening * context.reference_price <= caps.max_notional
        if caps.max_position is not None:
            direction = 1 if side is Side.BUY else -1
            worst = max(state.copy_position * direction, state.broker_position * direction)
            assert max(D(0), worst + closing) + opening <= caps.max_position


@given(qtys, qtys, factors)
def test_sizing_is_monotone_in_master_qty(a: Decimal, b: Decimal, factor: Decimal) -> None:
    low, high = sorted((a, b))
    s = mult(str(factor))
    assert size(s, low, D(1)).qty <= size(s, high, D(1)).qty
    ratio = EquityRatioSizing(mode="equity_ratio", factor=factor)
    ctx, st_ = MasterContext(master_equity=D(1000)), FollowerState(equity=D(3000))
    low_leg = one(order(str(low)), target(ratio, state=st_), ctx)
    high_leg = one(order(str(high)), target(ratio, state=st_), ctx)
    assert (low_leg.qty or 0) <= (high_leg.qty or 0)


@given(qtys, states, contexts, caps_strategy)
def test_the_same_inputs_always_give_the_same_plan(
    qty: Decimal, state: FollowerState, context: MasterContext, caps: Caps
) -> None:
    t = target(mult("1.5"), caps=caps, state=state)
    assert plan(order(str(qty)), [t], NOW, context) == plan(order(str(qty)), [t], NOW, context)


def test_evolve_is_dataclasses_replace_for_the_hot_path_types() -> None:
    """recording.py copies targets, states and legs with `evolve` instead of
    dataclasses.replace: the same value, and unknown fields refused like replace does."""
    import dataclasses

    from replication.model import FollowerState, evolve

    state = FollowerState()
    changed = evolve(state, orders_today=3, open_symbols=frozenset({"AAPL"}))
    assert changed == dataclasses.replace(state, orders_today=3, open_symbols=frozenset({"AAPL"}))
    assert state.orders_today == 0  # the original is untouched
    with pytest.raises(TypeError):
        evolve(state, no_such_field=1)


def test_quick_init_builds_the_same_frozen_values_as_dataclass_init() -> None:
    """quick_init replaces a frozen dataclass's __init__ (per-leg types): same parameters,
    defaults and factories, same values, still frozen; slotted classes too."""
    import dataclasses
    import inspect

    from replication.model import quick_init

    def both(slots: bool) -> tuple[Any, Any]:
        def make() -> Any:
            @dataclasses.dataclass(frozen=True, slots=slots)
            class Value:
                a: int
                b: str = "x"
                c: list[int] = dataclasses.field(default_factory=list)

            return Value

        return make(), quick_init(make())

    for slots in (False, True):
        plain, quick = both(slots)
        got = inspect.signature(quick.__init__).parameters
        want = inspect.signature(plain.__init__).parameters
        assert [(p.name, p.kind) for p in got.values()] == [(p.name, p.kind) for p in want.values()]
        assert got["b"].default == "x" and got["a"].default is inspect.Parameter.empty
        for args, kwargs in [((1,), {}), ((1, "y"), {}), ((1,), {"c": [2]}), ((), {"a": 3})]:
            made, expected = quick(*args, **kwargs), plain(*args, **kwargs)
            assert dataclasses.astuple(made) == dataclasses.astuple(expected)
            assert repr(made).split("(", 1)[1] == repr(expected).split("(", 1)[1]
        assert quick(1).c is not quick(1).c  # a fresh default per instance
        assert quick(1) == quick(1) and quick(1) != quick(2)
        with pytest.raises(dataclasses.FrozenInstanceError):
            quick(1).a = 2
        with pytest.raises(TypeError):
            quick()  # a required field is still required
