"""Copies follow the fraction the master's own order filled (issue 18): the pure rule."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from replication.sizing import excess_over_fraction
from services.app.compensating import EXPIRED_REASON, PARTIAL_REASON, REASON, goal_for
from services.infra.db.repositories.compensation import MasterFill


@pytest.mark.parametrize(
    ("filled", "qty", "fraction", "step", "excess"),
    [
        (D(5), D(5), D("0.4"), D(1), D(3)),  # filled all: back to 2 of 5
        (D(10), D(10), D("0.4"), D(1), D(6)),
        (D(3), D(3), D("0.4"), D(1), D(2)),  # 1.2 floors to 1: never above the master's fraction
        (D(1), D(5), D("0.4"), D(1), D(0)),  # filled less: left as it is
        (D(2), D(5), D("0.4"), D(1), D(0)),  # exactly the fraction
        (D("2.5"), D("2.5"), D("0.4"), D("0.1"), D("1.5")),  # fractional step
        (D(4), D(4), D(0), D(1), D(4)),  # refused: everything
        (D(0), D(4), D(0), D(1), D(0)),
        (D(4), D(0), D("0.5"), D(1), D(0)),
    ],
)
def test_excess_over_the_masters_fraction(
    filled: D, qty: D, fraction: D, step: D, excess: D
) -> None:
    assert excess_over_fraction(filled, qty, fraction, step) == excess


def test_goal_follows_how_the_master_leg_ended() -> None:
    refused = goal_for(MasterFill("rejected", D(5), D(0)))
    assert refused is not None and refused.fraction == 0 and refused.reason == REASON
    assert refused.keep_allowed
    partial = goal_for(MasterFill("canceled", D(5), D(2)))
    assert partial is not None and partial.fraction == D("0.4")
    assert partial.reason == PARTIAL_REASON and not partial.keep_allowed
    assert partial.cancel_reason == "master_canceled"
    nothing = goal_for(MasterFill("canceled", D(5), None))
    assert nothing is not None and nothing.fraction == 0
    assert goal_for(MasterFill("canceled", D(5), D(5))) is None  # filled before the cancel
    assert goal_for(MasterFill("filled", D(5), D(5))) is None
    assert goal_for(MasterFill("partially_filled", D(5), D(2))) is None
    assert goal_for(None) is None


def test_an_expired_master_leg_brings_copies_to_what_it_filled() -> None:
    """Never placed before its deadline: like a refusal (nothing filled; keep applies)."""
    never = goal_for(MasterFill("expired", D(5), D(0)))
    assert never is not None and never.fraction == 0 and never.reason == EXPIRED_REASON
    assert never.keep_allowed and never.cancel_reason == EXPIRED_REASON
    part = goal_for(MasterFill("expired", D(4), D(1)))
    assert part is not None and part.fraction == D("0.25")
    assert goal_for(MasterFill("expired", D(4), D(4))) is None
