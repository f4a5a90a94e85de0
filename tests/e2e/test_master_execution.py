"""Followers follow the master's execution (issue 18), end to end against the simulator: orders
the master's broker would refuse are refused at ingest; an order it refuses after ingest leaves
every follower flat under both copy_on modes."""

from __future__ import annotations

import asyncio
import os
from decimal import Decimal
from typing import Any

import pytest

from tests.e2e.test_api import _assert_error
from tests.helpers import Api, eventually


@pytest.fixture
async def symbol(api: Api) -> str:
    name = "M" + os.urandom(3).hex().upper()
    assert (await api.sim.put("/sim/prices", json={name: "100"})).status_code == 200
    return name


async def _copy_on(api: Api, token: str, mode: str) -> None:
    response = await api.http.patch(
        "/v1/masters/me", headers=api.auth(token), json={"copy_on": mode}
    )
    assert response.status_code == 200, response.text
    assert response.json()["copy_on"] == mode


async def test_orders_the_master_broker_would_refuse_are_422(api: Api, symbol: str) -> None:
    _, master = await api.user("master")
    account, _ = await api.sim_account(master, cash="1000")
    follower_id, _ = await api.user("follower")
    blocked = "B" + os.urandom(3).hex().upper()
    stepped = "S" + os.urandom(3).hex().upper()
    await api.sim.put(
        "/sim/assets",
        json={blocked: {"tradable": False}, stepped: {"min_trade_increment": "0.5"}},
    )
    cases: list[tuple[dict[str, Any], str]] = [
        ({"symbol": blocked, "qty": "1"}, "not_tradable"),
        ({"qty": "0.5"}, "fractional_not_supported"),
        ({"symbol": stepped, "qty": "0.3"}, "qty_step"),
        ({"qty": "11"}, "insufficient_buying_power"),
        ({"qty": "20", "type": "limit", "limit_price": "60"}, "insufficient_buying_power"),
    ]
    for fields, code in cases:
        response = await api.order(master, account, **{"symbol": symbol, **fields})
        _assert_error(response, 422, code)
    # What it would take still goes through; sells are not held to buying power.
    assert (await api.order(master, account, symbol=symbol, qty="9")).status_code == 202
    assert (
        await api.order(master, account, symbol=symbol, qty="50", side="sell")
    ).status_code == 202
    assert follower_id


async def test_a_replay_is_never_re_judged(api: Api, symbol: str) -> None:
    """The same order again (same client_order_id and body) is the first answer, even once the
    checks would refuse it as a new order (they only look for a replay when they refuse)."""
    _, master = await api.user("master")
    account, _ = await api.sim_account(master, cash="1000")
    first = await api.order(master, account, symbol=symbol, qty="9", client_order_id="replay-1")
    assert first.status_code == 202, first.text
    assert (await api.sim.put("/sim/prices", json={symbol: "1000"})).status_code == 200

    async def new_orders_refused() -> bool:
        fresh = await api.order(master, account, symbol=symbol, qty="9")
        return fresh.status_code == 422

    await eventually(new_orders_refused, timeout_s=20, interval_s=0.3)
    again = await api.order(master, account, symbol=symbol, qty="9", client_order_id="replay-1")
    assert again.status_code == 202, again.text
    assert again.json()["order_id"] == first.json()["order_id"]


async def _rows(api: Api, follower: dict[str, str], order_id: str) -> list[dict[str, Any]]:
    response = await api.http.get(
        "/v1/copies", headers=api.auth(follower["token"]), params={"order_id": order_id}
    )
    rows: list[dict[str, Any]] = response.json()
    return rows


@pytest.mark.parametrize("mode", ["submitted", "accepted"])
async def test_a_refused_master_order_leaves_every_follower_flat(
    api: Api, symbol: str, mode: str
) -> None:
    master_id, master = await api.user("master")
    await _copy_on(api, master, mode)
    account, master_sim = await api.sim_account(master)
    followers = [
        await api.follower(master_id, {"mode": "fixed", "qty": "3"}),
        await api.follower(master_id, {"mode": "multiplier", "factor": "2"}),
    ]
    faults = await api.sim.put(
        "/sim/faults", params={"account_id": master_sim}, json={"reject_orders": True}
    )
    assert faults.status_code == 200, faults.text
    order = (await api.order(master, account, symbol=symbol, qty="5")).json()

    async def refused() -> bool:
        r = await api.http.get(f"/v1/orders/{order['order_id']}", headers=api.auth(master))
        execution = r.json()["master_execution"]
        return execution is not None and execution["status"] == "rejected"

    await eventually(refused, message="master leg not refused")

    async def flat_and_explained() -> list[list[dict[str, Any]]] | None:
        seen = []
        for follower in followers:
            if await api.position(follower["sim_account_id"], symbol) != Decimal(0):
                return None
            rows = await _rows(api, follower, order["order_id"])
            if not rows or any(row["status"] in ("submitting", "unknown") for row in rows):
                return None
            if not any(row["reason"] == "master_rejected" for row in rows):
                return None
            seen.append(rows)
        return seen

    seen = await eventually(flat_and_explained, message="followers not flat")
    assert await api.position(master_sim, symbol) == 0
    await api.settled(master, order["order_id"])
    for follower in followers:
        # Exactly once (simulator truth): the copy and, if it filled, one market order closing
        # it, or nothing at all.
        placed = [
            (o["side"], o["type"], o["status"], o["filled_qty"])
            for o in await api.sim_orders()
            if o["account_id"] == follower["sim_account_id"] and o["symbol"] == symbol
        ]
        rows = await _rows(api, follower, order["order_id"])
        closes = [r for r in rows if r["reason"] == "master_rejected" and r["side"] == "sell"]
        if placed:
            [(_, _, _, qty), close] = sorted(placed)
            assert close == ("sell", "market", "filled", qty)
            assert [(r["status"], r["qty"]) for r in closes] == [("filled", qty)]
        else:
            assert closes == []
    if mode == "accepted":
        # Nothing was ever sent for the followers.
        for rows in seen:
            assert [(r["status"], r["reason"]) for r in rows] == [("skipped", "master_rejected")]
        orders = [o for o in await api.sim_orders() if o["symbol"] == symbol]
        assert orders == []


async def test_accepted_mode_copies_once_the_master_is_accepted(api: Api, symbol: str) -> None:
    master_id, master = await api.user("master")
    await _copy_on(api, master, "accepted")
    account, master_sim = await api.sim_account(master)
    follower = await api.follower(master_id, {"mode": "fixed", "qty": "3"})
    order = (await api.order(master, account, symbol=symbol, qty="5")).json()
    summary = await api.settled(master, order["order_id"])
    assert summary["master_execution"]["status"] == "filled"
    copy = await api.copy_of(follower, order["order_id"])
    assert (copy["status"], copy["qty"]) == ("filled", "3")
    assert await api.position(follower["sim_account_id"], symbol) == 3
    assert await api.position(master_sim, symbol) == 5


async def test_a_master_without_followers_is_not_asked_for_positions(api: Api, symbol: str) -> None:
    """The master's position sizes and classifies copies only: without followers neither the
    plan nor the refresh after the master's order asks its broker; with one follower, they do."""
    master_id, master = await api.user("master")
    account, sim_account = await api.sim_account(master)

    async def reads() -> int:
        stats = (await api.sim.get("/sim/stats")).json()
        return int(stats["accounts"][sim_account]["position_reads"])

    for _ in range(2):  # the refresh would follow the first fill: the second order waits it out
        alone = await api.order(master, account, symbol=symbol, qty="2")
        assert alone.status_code == 202, alone.text
        summary = await api.settled(master, alone.json()["order_id"])
        assert summary["master_execution"]["status"] == "filled", summary
    await asyncio.sleep(0.5)
    assert await reads() == 0
    await api.follower(master_id, {"mode": "multiplier", "factor": "1"})
    copied = await api.order(master, account, symbol=symbol, qty="2", side="sell")
    assert copied.status_code == 202, copied.text
    await api.settled(master, copied.json()["order_id"])

    async def asked() -> bool:
        return await reads() > 0

    await eventually(asked, timeout_s=10, interval_s=0.2)
