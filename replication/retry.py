"""Retries bounded by time, not by attempts (AWS Builders' Library, "Timeouts, retries and
backoff with jitter"): a copy is retried while it is still worth placing, i.e. until its copy
deadline, with capped exponential backoff and jitter; a fast-failing broker never burns a fixed
number of attempts in seconds.

Pure: `(inputs, now, random)` → values."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

DEFAULT_COPY_DEADLINE_S = 300.0
BACKOFF_BASE_S = 1.0
# The longest wait between two tries: a broker that answers again is tried within it, so its
# copies are placed within 30 s of its recovery (tests/chaos), never a whole backoff later.
BACKOFF_CAP_S = 15.0
# After a 429, one request per account probes the limit: never sooner than the broker's
# Retry-After unless that is longer than PROBE_CAP_S (a lifted limit is noticed within it).
PROBE_BASE_S = 1.0
PROBE_CAP_S = 15.0


def backoff_s(
    attempt: int,
    random: float,
    retry_after_s: float = 0.0,
    base_s: float = BACKOFF_BASE_S,
    cap_s: float = BACKOFF_CAP_S,
    paced: bool = False,
) -> float:
    """Seconds to wait before attempt `attempt + 1`: "equal jitter" (half the capped exponential
    plus a random half, `random` in [0, 1)), never sooner than the broker's `Retry-After`.
    `paced`: the wait was set by an account's 429 gate (services/infra/cooldown.py),
    which already backs off; the leg comes back when the gate opens, give or take half a base."""
    if paced:
        return retry_after_s + base_s / 2 * random
    ceiling = min(cap_s, base_s * float(2 ** max(0, min(attempt, 30))))
    return max(retry_after_s, ceiling / 2 + ceiling / 2 * random)


def probe_interval_s(limited_times: int, retry_after_s: float, cap_s: float = PROBE_CAP_S) -> float:
    """How long an account answered 429 `limited_times` times in a row waits before its next
    probe: the broker's Retry-After, at least an exponential of the count, at most `cap_s`
    (infinite for a broker whose Retry-After must be honoured in full)."""
    exponential = PROBE_BASE_S * float(2 ** max(0, min(limited_times - 1, 30)))
    return min(cap_s, max(retry_after_s, exponential))


def copy_window_s(filters: Mapping[str, Any] | None) -> float:
    """How long after the master's signal a copy is still worth placing: the subscription's
    `max_signal_age_ms` when set (a staler copy would be skipped anyway), else its
    `copy_deadline_s`, else 300 s."""
    filters = filters or {}
    age_ms = filters.get("max_signal_age_ms")
    if age_ms:
        return float(age_ms) / 1000
    return float(filters.get("copy_deadline_s") or DEFAULT_COPY_DEADLINE_S)


def end_of_trading_day(at: datetime, timezone: str) -> datetime:
    """The broker's next midnight after `at` (its trading day ends there)."""
    local = at.astimezone(ZoneInfo(timezone))
    return datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=local.tzinfo)


def copy_deadline(
    signal_at: datetime,
    filters: Mapping[str, Any] | None,
    time_in_force: str,
    timezone: str,
) -> datetime:
    """When a copy not placed yet stops being retried and ends `expired`: the copy window after
    the master's signal, and never past the broker's trading day for `day` orders."""
    deadline = signal_at + timedelta(seconds=copy_window_s(filters))
    if time_in_force == "day":
        deadline = min(deadline, end_of_trading_day(signal_at, timezone))
    return deadline
