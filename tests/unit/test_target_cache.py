from datetime import UTC, datetime, timedelta
from typing import Any

from services.app.targets import TargetCache
from services.infra.db.repositories.subscriptions import Target

T0 = datetime(2026, 11, 22, tzinfo=UTC)


def row(**changes: Any) -> Target:
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
        "credentials": b"sealed",
        "subscription_version": T0,
        "account_version": T0,
    }
    return Target(**{**base, **changes})


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


def test_target_sets_are_kept_per_master_version_and_bounded() -> None:
    from services.app.targets import TargetSets

    cache = TargetCache()
    rows = [
        row(subscription_id="s2", account_id="a2", follower_id="f2"),
        row(subscription_id="s1", account_id="a1"),
        row(subscription_id="s0", account_id="a2", follower_id="f2"),  # a2 twice: s0 wins
    ]
    sets = TargetSets(capacity=2)
    built = sets.put("m1", 7, rows, cache)
    assert [(t.account_id, t.subscription_id) for t in built.targets] == [
        ("a1", "s1"),
        ("a2", "s0"),
    ]
    assert built.rows["a2"].subscription_id == "s0"
    assert sets.get("m1", 7) is built
    assert sets.get("m1", 8) is None  # the database moved the version: not trusted
    only = built.only(["a2", "zz"])
    assert [t.account_id for t in only.targets] == ["a2"] and list(only.rows) == ["a2"]
    assert built.only(["a2", "zz"]) is only  # a shard's subset is made once per version
    assert built.shards(1) == [["a1"], ["a2"]] and built.shards(1) is built.shards(1)
    assert built.shards(250) == [["a1", "a2"]]
    assert [t.account_id for t in built.only(["a1"]).targets] == ["a1"]
    sets.put("m2", 1, rows, cache)
    assert sets.get("m1", 7) is built  # m1 is now the most recently used
    sets.put("m3", 1, rows, cache)
    assert sets.get("m2", 1) is None and sets.get("m1", 7) is built  # m2 evicted


def test_what_planning_asks_of_every_follower_is_answered_once_per_set() -> None:
    from services.app.targets import TargetSet

    cache = TargetCache()
    fixed = row()
    notional = row(
        subscription_id="s2",
        account_id="a2",
        follower_id="f2",
        broker="alpaca",
        sizing={"mode": "notional", "amount": "100"},
    )
    equity = row(
        subscription_id="s3",
        account_id="a3",
        follower_id="f3",
        sizing={"mode": "equity_ratio"},
    )
    capped = row(
        subscription_id="s4", account_id="a4", follower_id="f4", caps={"max_notional": "500"}
    )
    plain = TargetSet.build(1, [fixed], cache)
    assert not plain.needs_price and not plain.needs_master_equity
    assert TargetSet.build(2, [fixed, notional], cache).needs_price
    assert TargetSet.build(3, [fixed, capped], cache).needs_price
    assert TargetSet.build(4, [fixed, equity], cache).needs_master_equity
    mixed = TargetSet.build(5, [fixed, notional, equity], cache)
    assert {b: r.account_id for b, r in mixed.one_per_broker.items()} == {
        "sim": "a1",
        "alpaca": "a2",
    }
    assert mixed.one_per_broker is mixed.one_per_broker  # computed once per set (version)
