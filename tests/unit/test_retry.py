"""Retries bounded by time (replication.retry): backoff with jitter and the copy deadline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replication.retry import (
    BACKOFF_CAP_S,
    backoff_s,
    copy_deadline,
    copy_window_s,
    end_of_trading_day,
)

SIGNAL = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)  # 10:00 in New York


@given(st.integers(min_value=0, max_value=10_000), st.floats(min_value=0, max_value=0.999))
def test_backoff_is_capped_jittered_and_never_zero(attempt: int, random: float) -> None:
    wait = backoff_s(attempt, random)
    ceiling = min(BACKOFF_CAP_S, 2.0 ** min(attempt, 30))
    assert ceiling / 2 <= wait <= ceiling


def test_backoff_grows_then_stops_growing_and_honours_retry_after() -> None:
    assert [backoff_s(a, 0.0) for a in range(7)] == [0.5, 1, 2, 4, 7.5, 7.5, 7.5]
    assert backoff_s(1, 0.0, retry_after_s=7) == 7  # the broker's Retry-After wins


@pytest.mark.parametrize(
    "filters,expected",
    [
        (None, 300.0),
        ({}, 300.0),
        ({"copy_deadline_s": 60}, 60.0),
        ({"copy_deadline_s": 60, "max_signal_age_ms": 5000}, 5.0),  # max signal age wins
    ],
)
def test_copy_window(filters: dict[str, int] | None, expected: float) -> None:
    assert copy_window_s(filters) == expected


def test_deadline_is_the_window_after_the_signal() -> None:
    deadline = copy_deadline(SIGNAL, {"copy_deadline_s": 120}, "gtc", "America/New_York")
    assert deadline == SIGNAL + timedelta(seconds=120)


def test_a_day_order_never_outlives_its_trading_day() -> None:
    late = datetime(2026, 12, 1, 4, 58, tzinfo=UTC)  # 23:58 in New York
    deadline = copy_deadline(late, None, "day", "America/New_York")
    assert deadline == end_of_trading_day(late, "America/New_York")
    assert deadline == datetime(2026, 12, 1, 5, 0, tzinfo=UTC)
    # A good-till-canceled copy keeps its whole window.
    assert copy_deadline(late, None, "gtc", "America/New_York") == late + timedelta(seconds=300)
