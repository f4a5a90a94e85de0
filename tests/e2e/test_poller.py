"""The broker poller: orders placed directly at the broker are copied once, and only once."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from typing import Any

from tests.helpers import Api, Stack, eventually

INTERVAL_S = 0.5  # COPYTRADE_POLL_INTERVAL_S of the e2e stack


async def _master_with_followers(api: Api, n: int) -> tuple[str, str, dict[str, str], list[Any]]:
    master_id, master = await api.user("master")
    account_id, sim_id = await api.sim_account(master)
    key_id, secret = api.sim_keys[sim_id]
    keys = {"APCA-API-KEY-ID": key_id, "APCA-API-SECRET-KEY": secret}
    followers = [
        await api.follower(master_id, {"mode": "multiplier", "factor": "2"}) for _ in range(n)
    ]
    # Let the poller see the account once (its first sight only sets the cursor).
    await asyncio.sleep(INTERVAL_S * 3)
    return master, account_id, keys, followers


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


async def test_direct_orders_are_copied_within_two_intervals(api: Api) -> None:
    master, _, keys, followers = await _master_with_followers(api, 3)
    symbol = "P" + os.urandom(2).hex().upper()
    started = time.monotonic()
    await _direct(api, keys, symbol, qty="5")

    async def copied() -> bool:
        return len(await _copied(api, followers, symbol)) == len(followers)

    await eventually(copied, timeout_s=10, interval_s=0.05)
    elapsed = time.monotonic() - started
    assert elapsed < 2 * INTERVAL_S * 1.2 + 1.0, (
        f"took {elapsed:.2f}s"
    )  # 2 jittered polls + fan-out
    orders = (await api.http.get("/v1/orders", headers=api.auth(master))).json()
    [seen] = [o for o in orders if o["symbol"] == symbol]
    assert seen["qty"] == "5" and seen["master_execution"] is None  # not placed twice
    for follower in followers:
        copy = await api.copy_of(follower, seen["order_id"])
        assert copy["qty"] == "10"


async def test_api_orders_are_not_copied_twice(api: Api) -> None:
    master, account_id, _, followers = await _master_with_followers(api, 2)
    symbol = "Q" + os.urandom(2).hex().upper()
    order = (await api.order(master, account_id, symbol=symbol, qty="3")).json()
    await api.settled(master, order["order_id"])
    await asyncio.sleep(INTERVAL_S * 4)  # several polls see the master's own order at the broker
    assert set((await _copied(api, followers, symbol)).values()) == {1}
    orders = (await api.http.get("/v1/orders", headers=api.auth(master))).json()
    assert [o["order_id"] for o in orders if o["symbol"] == symbol] == [order["order_id"]]


async def test_poller_restart_neither_misses_nor_repeats(api: Api, stack: Stack) -> None:
    _, _, keys, followers = await _master_with_followers(api, 2)
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
    await asyncio.sleep(INTERVAL_S * 2)
    assert await copies(1)
    poller.start()
    await eventually(lambda: copies(3), timeout_s=15)
    await asyncio.sleep(INTERVAL_S * 4)
    assert await copies(3)  # and nothing repeated after a few more polls
