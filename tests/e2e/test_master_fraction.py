"""Followers follow the master's execution (issue 18), end to end against the simulator: a master
order canceled after partial fills brings every copy to the same fraction of its quantity, and a
subscription that chose on_master_rejected = keep keeps what its copy filled."""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Any

import pytest

from tests.helpers import Api, eventually


@pytest.fixture
async def symbol(api: Api) -> str:
    name = "F" + os.urandom(3).hex().upper()
    assert (await api.sim.put("/sim/prices", json={name: "100"})).status_code == 200
    return name


async def _fault(api: Api, sim_account_id: str, **faults: Any) -> None:
    r = await api.sim.put("/sim/faults", params={"account_id": sim_account_id}, json=faults)
    assert r.status_code == 200, r.text


async def _rows(api: Api, follower: dict[str, str], order_id: str) -> list[dict[str, Any]]:
    response = await api.http.get(
        "/v1/copies", headers=api.auth(follower["token"]), params={"order_id": order_id}
    )
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()
    return rows


async def _sim_orders(api: Api, sim_account_id: str, symbol: str) -> list[dict[str, Any]]:
    return [
        o
        for o in await api.sim_orders()
        if o["account_id"] == sim_account_id and o["symbol"] == symbol
    ]


async def test_a_master_cancel_after_partial_fills_brings_copies_to_the_same_fraction(
    api: Api, symbol: str
) -> None:
    master_id, master = await api.user("master")
    account, master_sim = await api.sim_account(master)
    full = await api.follower(master_id, {"mode": "fixed", "qty": "5"})
    double = await api.follower(master_id, {"mode": "multiplier", "factor": "2"})
    short = await api.follower(master_id, {"mode": "fixed", "qty": "5"})
    # The master's broker fills 40% of its order and rests the rest; one follower's only 20%.
    await _fault(api, master_sim, partial_fill_ratio=0.4)
    await _fault(api, short["sim_account_id"], partial_fill_ratio=0.2)
    order = (
        await api.order(master, account, symbol=symbol, qty="5", type="limit", limit_price="101")
    ).json()
    order_id = order["order_id"]

    async def partly_filled() -> bool:
        r = await api.http.get(f"/v1/orders/{order_id}", headers=api.auth(master))
        execution = r.json()["master_execution"]
        if execution is None or execution["status"] != "partially_filled":
            return False
        statuses = [
            [row["status"] for row in await _rows(api, f, order_id)] for f in (full, double, short)
        ]
        return statuses == [["filled"], ["filled"], ["partially_filled"]]

    await eventually(partly_filled, message="master leg not partially filled")
    assert await api.position(full["sim_account_id"], symbol) == 5
    assert await api.position(double["sim_account_id"], symbol) == 10
    assert await api.position(short["sim_account_id"], symbol) == 1

    r = await api.http.post(f"/v1/orders/{order_id}/cancel", headers=api.auth(master))
    assert r.status_code == 202, r.text

    expected = {full["sim_account_id"]: 2, double["sim_account_id"]: 4}

    async def at_the_fraction() -> dict[str, list[dict[str, Any]]] | None:
        for sim_id, qty in expected.items():
            if await api.position(sim_id, symbol) != qty:
                return None
        rows = {f["sim_account_id"]: await _rows(api, f, order_id) for f in (full, double, short)}
        for sim_id in expected:
            unwinds = [row for row in rows[sim_id] if row["reason"] == "master_partial_cancel"]
            if not unwinds or unwinds[0]["status"] != "filled":
                return None
        if [row["status"] for row in rows[short["sim_account_id"]]] != ["canceled"]:
            return None
        return rows

    rows = await eventually(at_the_fraction, message="copies not at the master's fraction")
    # Simulator truth: the master holds 2 of 5; every copy 40% of its own quantity, or less.
    assert await api.position(master_sim, symbol) == 2
    assert await api.position(short["sim_account_id"], symbol) == 1  # filled less: left as is
    for sim_id, qty in expected.items():
        sells = [o for o in await _sim_orders(api, sim_id, symbol) if o["side"] == "sell"]
        assert [(o["qty"], o["type"], o["status"]) for o in sells] == [
            (str(qty * 3 // 2), "market", "filled")
        ]
        [unwind] = [row for row in rows[sim_id] if row["reason"] == "master_partial_cancel"]
        assert unwind["side"] == "sell" and Decimal(unwind["qty"]) == Decimal(qty * 3 // 2)
    assert rows[short["sim_account_id"]][0]["reason"] == "master_canceled"
    assert [o["status"] for o in await _sim_orders(api, master_sim, symbol)] == ["canceled"]
    await _fault(api, master_sim, partial_fill_ratio=None)


async def test_keep_holds_a_filled_copy_when_the_master_is_refused(api: Api, symbol: str) -> None:
    master_id, master = await api.user("master")
    account, master_sim = await api.sim_account(master)
    closing = await api.follower(master_id, {"mode": "fixed", "qty": "3"})
    _, token = await api.user("follower")
    keeper_account, keeper_sim = await api.sim_account(token)
    r = await api.http.post(
        "/v1/subscriptions",
        headers=api.auth(token),
        json={
            "master_id": master_id,
            "account_id": keeper_account,
            "sizing": {"mode": "fixed", "qty": "3"},
            "on_master_rejected": "keep",
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["on_master_rejected"] == "keep"
    keeper = {"token": token, "sim_account_id": keeper_sim}
    await _fault(api, master_sim, reject_orders=True)
    order_id = (await api.order(master, account, symbol=symbol, qty="5")).json()["order_id"]

    async def compensated() -> list[dict[str, Any]] | None:
        if await api.position(closing["sim_account_id"], symbol) != 0:
            return None
        rows = await _rows(api, closing, order_id)
        if not any(
            row["reason"] == "master_rejected" and row["status"] == "filled" for row in rows
        ):
            return None
        return await _rows(api, keeper, order_id)

    kept = await eventually(compensated, message="the closing follower was not made flat")
    # The closing follower was made flat after its copy filled; the keeper's copy stays filled
    # and nothing was sent to close it (simulator truth).
    assert [(row["status"], row["qty"]) for row in kept] == [("filled", "3")]
    assert await api.position(keeper_sim, symbol) == 3
    assert [o["side"] for o in await _sim_orders(api, keeper_sim, symbol)] == ["buy"]
    assert await api.position(master_sim, symbol) == 0
    await _fault(api, master_sim, reject_orders=False)
