from datetime import UTC, datetime, timedelta
from typing import Any

from services.targets import TargetCache

T0 = datetime(2026, 11, 22, tzinfo=UTC)


def row(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "subscription_id": "s1",
        "follower_id": "f1",
        "account_id": "a1",
        "broker": "sim",
        "sizing": {"mode": "fixed", "qty": "2"},
        "caps": {},
        "filters": {},
        "paused": False,
        "account_halted": False,
        "subscription_version": T0,
        "account_version": T0,
    }
    return {**base, **changes}


def test_targets_are_parsed_once_per_version() -> None:
    cache = TargetCache()
    first = cache.target(row())
    assert cache.target(row()) is first
    paused = cache.target(row(paused=True, subscription_version=T0 + timedelta(seconds=1)))
    assert paused is not first and paused.paused
    halted = cache.target(
        row(
            account_halted=True,
            subscription_version=T0 + timedelta(seconds=1),
            account_version=T0 + timedelta(seconds=2),
        )
    )
    assert halted.account_halted
    # Without versions nothing is cached.
    assert cache.target(row(subscription_version=None)) is not cache.target(
        row(subscription_version=None)
    )
