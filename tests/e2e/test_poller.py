"""The broker poller: orders placed directly at the broker are copied once, and only once."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.helpers import Api, Stack, eventually

INTERVAL_S = 0.5  # COPYTRADE_POLL_INTERVAL_S of the e2e stack


async def _master_with_followers(
    api: Api, engine: AsyncEngine, n: int
) -> tuple[str, str, dict[str, str], list[Any]]:
    master_id, master = await api.user("master")
    account_id, sim_id = await api.sim_account(master)
    key_id, secret = api.sim_keys[sim_id]
    keys = {"APCA-API-KEY-ID": key_id, "APCA-API-SECRET-KEY": secret}
    followers = [
        await api.follower(master_id, {"mode": "multiplier", "factor": "2"}) for _ in range(n)
    ]

    # Wait until the poller has seen the account once (its first sight only sets the cursor).
    async def cursor_set() -> bool:
        async with engine.connect() as conn:
            row = await conn.execute(
                text("SELECT 1 FROM poller_cursors WHERE account_id = :a"), {"a": account_id}
            )
            return row.first() is not None

    await eventually(cursor_set, timeout_s=10, message="the poller never saw the account")
    return master, account_id, keys, followers


async def _a_poll_went_by(api: Api, master: str, keys: dict[str, str]) -> None:
    """Return once a poll that started after this call has been ingested: a marker order placed
    directly at the broker shows up among the master's orders. One poll lists and ingests in
    broker order, so everything placed before the marker has been decided by then."""
    marker = "M" + os.urandom(3).hex().upper()
    await _direct(api, keys, marker)

    async def ingested() -> bool:
        orders = (await api.http.get("/v1/orders", headers=api.auth(master))).json()
        return any(o["symbol"] == marker for o in orders)

    await eventually(ingested, timeout_s=10, message="no poll went by")


async def _direct(api: Api, keys: dict[str, str], symbol: str, qty: str = "1") -> str:
    r = await api.sim.post(
        "/v2/orders",
        headers=keys,
        json={
            "symbol": symbol,
            "qty": qty,
            "side": "buy",
            "type": "market",
            "time_in_force": "day",
        },
    )
    assert r.status_code == 200, r.text
    order_id: str = r.json()["id"]
    return order_id


async def _copied(api: Api, followers: list[Any], symbol: str) -> Counter[str]:
    accounts = {f["sim_account_id"] for f in followers}
    return Counter(
        o["account_id"]
        for o in await api.sim_orders()
        if o["account_id"] in accounts and o["symbol"] == symbol
    )


async def test_direct_orders_are_copied_within_a_few_intervals(
    api: Api, engine: AsyncEngine
) -> None:
    master, _, keys, followers = await _master_with_followers(api, engine, 3)
    symbol = "P" + os.urandom(2).hex().upper()
    started = time.monotonic()
    await _direct(api, keys, symbol, qty="5")

    async def copied() -> bool:
        return len(await _copied(api, followers, symbol)) == len(followers)

    await eventually(copied, timeout_s=10, interval_s=0.05)
    elapsed = time.monotonic() - started
    # Two jittered polls + the fan-out, with room for a loaded 2-core machine (a poll also
    # follows the master's open orders); a lost order would take forever, not seconds.
    assert elapsed < 4 * INTERVAL_S * 1.2 + 2.0, f"took {elapsed:.2f}s"
    orders = (await api.http.get("/v1/orders", headers=api.auth(master))).json()
    [seen] = [o for o in orders if o["symbol"] == symbol]
    assert seen["qty"] == "5" and seen["master_execution"] is None  # not placed twice
    for follower in followers:
        copy = await api.copy_of(follower, seen["order_id"])
        assert copy["qty"] == "10"


async def test_api_orders_are_not_copied_twice(api: Api, engine: AsyncEngine) -> None:
    master, account_id, keys, followers = await _master_with_followers(api, engine, 2)
    symbol = "Q" + os.urandom(2).hex().upper()
    order = (await api.order(master, account_id, symbol=symbol, qty="3")).json()
    await api.settled(master, order["order_id"])
    for _ in range(2):  # two polls, each seeing the master's own order at the broker (overlap)
        await _a_poll_went_by(api, master, keys)
    assert set((await _copied(api, followers, symbol)).values()) == {1}
    orders = (await api.http.get("/v1/orders", headers=api.auth(master))).json()
    assert [o["order_id"] for o in orders if o["symbol"] == symbol] == [order["order_id"]]


async def test_poller_restart_neither_misses_nor_repeats(
    api: Api, stack: Stack, engine: AsyncEngine
) -> None:
    master, _, keys, followers = await _master_with_followers(api, engine, 2)
    symbol = "R" + os.urandom(2).hex().upper()
    await _direct(api, keys, symbol)

    async def copies(n: int) -> bool:
        counts = await _copied(api, followers, symbol)
        return len(counts) == len(followers) and set(counts.values()) == {n}

    await eventually(lambda: copies(1), timeout_s=10)
    [poller] = [c for c in stack.children if c.name == "poller" and c.alive()]
    poller.signal(signal.SIGTERM)
    assert poller.wait(10)
    await _direct(api, keys, symbol)
    await _direct(api, keys, symbol)  # placed while nobody watches
    # Part of the scenario, not a wait: time passes while the poller is down (two intervals);
    # nothing may copy these orders meanwhile, and no event marks "nothing happened".
    await asyncio.sleep(INTERVAL_S * 2)
    assert await copies(1)
    poller.start()
    await eventually(lambda: copies(3), timeout_s=15)
    for _ in range(2):
        await _a_poll_went_by(api, master, keys)
    assert await copies(3)  # and nothing repeated after a few more polls


# Fidelity: what the master does to its own order at the broker reaches the copies -------------


async def _master_sim(api: Api, keys: dict[str, str]) -> str:
    """The simulator account id behind these keys."""
    [sim_id] = [s for s, (key_id, _) in api.sim_keys.items() if key_id == keys["APCA-API-KEY-ID"]]
    return sim_id


async def _place(api: Api, keys: dict[str, str], **fields: Any) -> dict[str, Any]:
    body = {"side": "buy", "type": "market", "time_in_force": "day", **fields}
    r = await api.sim.post("/v2/orders", headers=keys, json=body)
    assert r.status_code == 200, r.text
    order: dict[str, Any] = r.json()
    return order


async def _sim_orders_of(api: Api, followers: list[Any], symbol: str) -> list[dict[str, Any]]:
    accounts = {f["sim_account_id"] for f in followers}
    return [
        o for o in await api.sim_orders() if o["account_id"] in accounts and o["symbol"] == symbol
    ]


async def _master_order(api: Api, master: str, symbol: str) -> dict[str, Any] | None:
    orders = (await api.http.get("/v1/orders", headers=api.auth(master))).json()
    found = [o for o in orders if o["symbol"] == symbol]
    assert len(found) <= 1, found  # one master order per broker order, replaces included
    return found[0] if found else None


async def _resting_copies(
    api: Api, master: str, followers: list[Any], symbol: str, qty: str
) -> dict[str, Any]:
    """Wait until the master's resting order is copied and every copy rests at its broker."""
    order = await eventually(lambda: _master_order(api, master, symbol), timeout_s=10)

    async def resting() -> bool:
        rows = await _sim_orders_of(api, followers, symbol)
        return len(rows) == len(followers) and all(
            o["status"] == "new" and o["qty"] == qty for o in rows
        )

    await eventually(resting, timeout_s=10, message="copies not resting")
    return order


async def test_partial_fill_then_cancel_is_copied_at_the_filled_qty(
    api: Api, stack: Stack, engine: AsyncEngine
) -> None:
    master, _, keys, followers = await _master_with_followers(api, engine, 2)
    sim_id = await _master_sim(api, keys)
    symbol = "F" + os.urandom(2).hex().upper()
    [poller] = [c for c in stack.children if c.name == "poller" and c.alive()]
    poller.signal(signal.SIGTERM)  # the poller sees the order only once it has ended
    assert poller.wait(10)
    try:
        r = await api.sim.put(
            "/sim/faults", params={"account_id": sim_id}, json={"partial_fill_ratio": 0.3}
        )
        assert r.status_code == 200, r.text
        placed = await _place(api, keys, symbol=symbol, qty="10")
        assert placed["status"] == "partially_filled" and placed["filled_qty"] == "3"
        r = await api.sim.delete(f"/v2/orders/{placed['id']}", headers=keys)
        assert r.status_code == 204, r.text
    finally:
        await api.sim.put(
            "/sim/faults", params={"account_id": sim_id}, json={"partial_fill_ratio": None}
        )
        poller.start()

    async def copied() -> bool:
        rows = await _sim_orders_of(api, followers, symbol)
        return len(rows) == len(followers) and all(o["status"] == "filled" for o in rows)

    await eventually(copied, timeout_s=15, message="the filled part was not copied")
    rows = await _sim_orders_of(api, followers, symbol)
    assert sorted(o["filled_qty"] for o in rows) == ["6", "6"]  # twice the 3 that filled, not 10
    order = await _master_order(api, master, symbol)
    assert order is not None and order["qty"] == "3"
    for follower in followers:
        assert await api.position(follower["sim_account_id"], symbol) == Decimal(6)


async def test_a_cancel_at_the_broker_cancels_the_resting_copies(
    api: Api, engine: AsyncEngine
) -> None:
    master, _, keys, followers = await _master_with_followers(api, engine, 2)
    symbol = "C" + os.urandom(2).hex().upper()
    placed = await _place(api, keys, symbol=symbol, qty="3", type="limit", limit_price="50")
    order = await _resting_copies(api, master, followers, symbol, qty="6")
    r = await api.sim.delete(f"/v2/orders/{placed['id']}", headers=keys)
    assert r.status_code == 204, r.text

    async def canceled() -> bool:
        rows = await _sim_orders_of(api, followers, symbol)
        return len(rows) == len(followers) and all(o["status"] == "canceled" for o in rows)

    await eventually(canceled, timeout_s=15, message="copies still resting")
    for follower in followers:
        copy = await eventually(
            lambda f=follower: _status_is(api, f, order["order_id"], "canceled"), timeout_s=10
        )
        assert copy["filled_qty"] == "0"
    assert (await _master_order(api, master, symbol) or {})["cancel_requested"] is True


async def _status_is(
    api: Api, follower: dict[str, str], order_id: str, status: str
) -> dict[str, Any] | None:
    copy = await api.copy_of(follower, order_id)
    return copy if copy["status"] == status else None


async def test_a_replace_at_the_broker_resizes_the_copies(api: Api, engine: AsyncEngine) -> None:
    master, _, keys, followers = await _master_with_followers(api, engine, 2)
    symbol = "E" + os.urandom(2).hex().upper()
    placed = await _place(api, keys, symbol=symbol, qty="2", type="limit", limit_price="50")
    order = await _resting_copies(api, master, followers, symbol, qty="4")
    r = await api.sim.patch(
        f"/v2/orders/{placed['id']}", headers=keys, json={"qty": "5", "limit_price": "55"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["replaces"] == placed["id"]

    async def resized() -> bool:
        rows = await _sim_orders_of(api, followers, symbol)
        live = [o for o in rows if o["status"] == "new"]
        return (
            len(live) == len(followers)
            and all(o["qty"] == "10" and o["limit_price"] == "55" for o in live)
            and sum(o["status"] == "replaced" for o in rows) == len(followers)
        )

    await eventually(resized, timeout_s=15, message="copies not resized")
    for follower in followers:
        copy = await api.copy_of(follower, order["order_id"])
        assert copy["qty"] == "10" and copy["status"] == "accepted"
    after = await _master_order(api, master, symbol)  # the replacement is no new master order
    assert after is not None and after["order_id"] == order["order_id"] and after["qty"] == "5"
    await _a_poll_went_by(api, master, keys)
    assert len(await _sim_orders_of(api, followers, symbol)) == 2 * len(followers)
