"""Followers follow the master's execution (issue 18), end to end against the simulator: a master
order canceled (or expired at the close) after partial fills brings every copy to the same
fraction of its quantity, whether it came through the API or the master placed it directly at
its broker (the poller follows it), and a subscription that chose on_master_rejected = keep
keeps what its copy filled."""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

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
    keeper = await api.follower(master_id, {"mode": "fixed", "qty": "3"}, on_master_rejected="keep")
    subscriptions = await api.http.get("/v1/subscriptions", headers=api.auth(keeper["token"]))
    assert [sub["on_master_rejected"] for sub in subscriptions.json()] == ["keep"]
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
    assert await api.position(keeper["sim_account_id"], symbol) == 3
    assert [o["side"] for o in await _sim_orders(api, keeper["sim_account_id"], symbol)] == ["buy"]
    assert await api.position(master_sim, symbol) == 0
    await _fault(api, master_sim, reject_orders=False)


# The same fraction for an order that expired at the close, and for orders placed directly at
# the master's broker ----------------------------------------------------------------------------


async def _at_fraction(
    api: Api,
    order_id: str,
    symbol: str,
    expected: dict[str, tuple[dict[str, str], int, int]],
    reason: str = "master_partial_cancel",
) -> dict[str, list[dict[str, Any]]] | None:
    """Every follower holds its expected quantity after one filled unwind (or none when it has
    nothing to give back); `expected`: sim account → (follower, holds, unwound)."""
    rows = {}
    for sim_id, (follower, holds, unwound) in expected.items():
        if await api.position(sim_id, symbol) != holds:
            return None
        rows[sim_id] = await _rows(api, follower, order_id)
        unwinds = [row for row in rows[sim_id] if row["reason"] == reason]
        if unwound and [row["status"] for row in unwinds] != ["filled"]:
            return None
    return rows


async def _exactly_once(
    api: Api, symbol: str, expected: dict[str, tuple[dict[str, str], int, int]]
) -> None:
    """Simulator truth: each follower's only sell is its one market unwind of the excess."""
    for sim_id, (_, holds, unwound) in expected.items():
        assert await api.position(sim_id, symbol) == holds
        sells = [o for o in await _sim_orders(api, sim_id, symbol) if o["side"] == "sell"]
        want = [(str(unwound), "market", "filled")] if unwound else []
        assert [(o["qty"], o["type"], o["status"]) for o in sells] == want


async def test_a_master_order_expired_at_the_close_after_partial_fills(
    api: Api, symbol: str
) -> None:
    """Alpaca's `expired` (a day order at the close) ends the master's order like a cancel: the
    copies are brought to the fraction it filled."""
    master_id, master = await api.user("master")
    account, master_sim = await api.sim_account(master)
    full = await api.follower(master_id, {"mode": "fixed", "qty": "5"})
    double = await api.follower(master_id, {"mode": "multiplier", "factor": "2"})
    await _fault(api, master_sim, partial_fill_ratio=0.4)
    try:
        order = await api.order(
            master, account, symbol=symbol, qty="5", type="limit", limit_price="101"
        )
        order_id = order.json()["order_id"]

        async def copies_filled() -> bool:
            r = await api.http.get(f"/v1/orders/{order_id}", headers=api.auth(master))
            execution = r.json()["master_execution"]
            return (
                execution is not None
                and execution["status"] == "partially_filled"
                and await api.position(full["sim_account_id"], symbol) == 5
                and await api.position(double["sim_account_id"], symbol) == 10
            )

        await eventually(copies_filled, message="copies not filled")
        # The day ends at the master's broker: its resting 3 expire, the 2 it filled stay.
        r = await api.sim.post("/sim/day", params={"account_id": master_sim})
        assert r.status_code == 200 and r.json()["expired"] == 1, r.text
        expected = {
            full["sim_account_id"]: (full, 2, 3),
            double["sim_account_id"]: (double, 4, 6),
        }
        await eventually(
            lambda: _at_fraction(api, order_id, symbol, expected),
            message="copies not at the fraction of the expired master order",
        )
        await api.settled(master, order_id)
        await _exactly_once(api, symbol, expected)
        [placed] = await _sim_orders(api, master_sim, symbol)
        assert (placed["status"], placed["filled_qty"]) == ("expired", "2")
        r = await api.http.get(f"/v1/orders/{order_id}", headers=api.auth(master))
        assert r.json()["master_execution"]["filled_qty"] == "2"
    finally:
        await _fault(api, master_sim, partial_fill_ratio=None)


async def _direct_master(api: Api, engine: AsyncEngine) -> tuple[str, str, str, dict[str, str]]:
    """A master whose account the poller watches: (master_id, token, sim account, its keys)."""
    master_id, master = await api.user("master")
    account_id, master_sim = await api.sim_account(master)
    key_id, secret = api.sim_keys[master_sim]

    async def watched() -> bool:
        async with engine.connect() as conn:
            row = await conn.execute(
                text("SELECT 1 FROM poller_cursors WHERE account_id = :a"), {"a": account_id}
            )
            return row.first() is not None

    await eventually(watched, timeout_s=10, message="the poller never saw the account")
    return master_id, master, master_sim, {"APCA-API-KEY-ID": key_id, "APCA-API-SECRET-KEY": secret}


async def _place_direct(api: Api, keys: dict[str, str], **fields: Any) -> dict[str, Any]:
    body = {"side": "buy", "type": "limit", "time_in_force": "day", **fields}
    r = await api.sim.post("/v2/orders", headers=keys, json=body)
    assert r.status_code == 200, r.text
    placed: dict[str, Any] = r.json()
    return placed


async def _ingested(api: Api, master: str, symbol: str) -> str:
    async def found() -> str | None:
        orders = (await api.http.get("/v1/orders", headers=api.auth(master))).json()
        ids = [o["order_id"] for o in orders if o["symbol"] == symbol]
        assert len(ids) <= 1, orders  # one master order per broker order
        return ids[0] if ids else None

    order_id: str = await eventually(found, timeout_s=10, message="order not ingested")
    return order_id


async def _polls_went_by(api: Api, master: str, keys: dict[str, str], n: int = 2) -> None:
    """`n` polls that started after this call have passed: a marker order placed directly at
    the broker each time shows up among the master's orders."""
    for _ in range(n):
        marker = "M" + os.urandom(3).hex().upper()
        await _place_direct(api, keys, symbol=marker, qty="1", type="market")
        await _ingested(api, master, marker)


async def test_a_broker_order_canceled_after_partial_fills_brings_copies_to_the_fraction(
    api: Api, engine: AsyncEngine, symbol: str
) -> None:
    """The master trades directly at its broker: the poller copies its resting order and, when
    the master cancels it there after 40% filled, the copies are brought to 40% too."""
    master_id, master, master_sim, keys = await _direct_master(api, engine)
    full = await api.follower(master_id, {"mode": "fixed", "qty": "5"})
    double = await api.follower(master_id, {"mode": "multiplier", "factor": "2"})
    short = await api.follower(master_id, {"mode": "fixed", "qty": "5"})
    await _fault(api, short["sim_account_id"], partial_fill_ratio=0.2)
    await _fault(api, master_sim, partial_fill_ratio=0.4)
    try:
        placed = await _place_direct(api, keys, symbol=symbol, qty="5", limit_price="101")
        assert (placed["status"], placed["filled_qty"]) == ("partially_filled", "2")
        order_id = await _ingested(api, master, symbol)

        async def copies_filled() -> bool:
            return [
                await api.position(f["sim_account_id"], symbol) for f in (full, double, short)
            ] == [5, 10, 1]

        await eventually(copies_filled, message="copies not filled")
        r = await api.sim.delete(f"/v2/orders/{placed['id']}", headers=keys)
        assert r.status_code == 204, r.text
        expected = {
            full["sim_account_id"]: (full, 2, 3),
            double["sim_account_id"]: (double, 4, 6),
            short["sim_account_id"]: (short, 1, 0),  # filled less than the fraction: left
        }
        rows = await eventually(
            lambda: _at_fraction(api, order_id, symbol, expected),
            message="copies not at the fraction of the master's broker order",
        )
        await eventually(
            lambda: _canceled(api, short, order_id), message="the resting copy not canceled"
        )
        await _polls_went_by(api, master, keys)  # the poller sees the ended order again
        await _exactly_once(api, symbol, expected)
        copy_rows = rows[full["sim_account_id"]]
        assert sorted((row["side"], row["qty"], row["status"]) for row in copy_rows) == [
            ("buy", "5", "filled"),
            ("sell", "3", "filled"),
        ]
        assert await api.position(master_sim, symbol) == 2
    finally:
        await _fault(api, master_sim, partial_fill_ratio=None)


async def _canceled(api: Api, follower: dict[str, str], order_id: str) -> bool:
    rows = await _rows(api, follower, order_id)
    return [(row["status"], row["reason"]) for row in rows] == [("canceled", "master_canceled")]


async def test_a_broker_order_canceled_unfilled_leaves_every_follower_flat(
    api: Api, engine: AsyncEngine, symbol: str
) -> None:
    """The master's order rests unfilled at its broker while the copies fill at theirs; the
    master cancels it there: fraction 0, every copy is closed (a cancel, so `keep` does not
    apply: it is for refusals)."""
    master_id, master, master_sim, keys = await _direct_master(api, engine)
    first = await api.follower(master_id, {"mode": "fixed", "qty": "3"})
    second = await api.follower(master_id, {"mode": "multiplier", "factor": "2"})
    await _fault(api, master_sim, no_liquidity=True)
    try:
        placed = await _place_direct(api, keys, symbol=symbol, qty="3", limit_price="101")
        assert (placed["status"], placed["filled_qty"]) == ("new", "0")
        order_id = await _ingested(api, master, symbol)

        async def copies_filled() -> bool:
            return [await api.position(f["sim_account_id"], symbol) for f in (first, second)] == [
                3,
                6,
            ]

        await eventually(copies_filled, message="copies not filled")
        r = await api.sim.delete(f"/v2/orders/{placed['id']}", headers=keys)
        assert r.status_code == 204, r.text
        expected = {
            first["sim_account_id"]: (first, 0, 3),
            second["sim_account_id"]: (second, 0, 6),
        }
        await eventually(
            lambda: _at_fraction(api, order_id, symbol, expected),
            message="followers not flat after the master's unfilled order was canceled",
        )
        await _polls_went_by(api, master, keys)
        await _exactly_once(api, symbol, expected)
        assert await api.position(master_sim, symbol) == 0
    finally:
        await _fault(api, master_sim, no_liquidity=False)


async def test_a_master_order_never_placed_before_its_deadline_leaves_followers_flat(
    api: Api, engine: AsyncEngine, symbol: str
) -> None:
    """copy_on = submitted: the copies fill while the master's broker keeps answering 429 to the
    master's own order; once its copy window is over the master leg ends `expired`, never
    placed: every copy is closed (reason master_expired), and a subscription that chose
    on_master_rejected = keep keeps its copy, as for a refusal."""
    master_id, master = await api.user("master")
    account, master_sim = await api.sim_account(master)
    closing = await api.follower(master_id, {"mode": "fixed", "qty": "3"})
    keeper = await api.follower(master_id, {"mode": "fixed", "qty": "2"}, on_master_rejected="keep")
    # The master's broker answers 429 to every new order of the master's (reads are served).
    await _fault(api, master_sim, throttle_orders=True)
    try:
        order_id = (await api.order(master, account, symbol=symbol, qty="5")).json()["order_id"]

        async def master_retrying() -> bool:
            r = await api.http.get(f"/v1/orders/{order_id}", headers=api.auth(master))
            execution = r.json()["master_execution"]
            return (
                execution is not None
                and execution["status"] == "retrying"
                and await api.position(closing["sim_account_id"], symbol) == 3
                and await api.position(keeper["sim_account_id"], symbol) == 2
            )

        await eventually(master_retrying, message="copies not filled, master not retrying")
        # Its copy window (300 s after the signal) runs out: the signal moves back 10 minutes
        # and the master leg's retry comes due now.
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE master_orders SET created_at = created_at - interval '10 minutes' "
                    "WHERE id = :o"
                ),
                {"o": order_id},
            )
            await conn.execute(
                text(
                    "UPDATE legs SET lease_expires_at = now() "
                    "WHERE order_id = :o AND action = 'master'"
                ),
                {"o": order_id},
            )
        expected = {
            closing["sim_account_id"]: (closing, 0, 3),
            keeper["sim_account_id"]: (keeper, 2, 0),
        }
        await eventually(
            lambda: _at_fraction(api, order_id, symbol, expected, reason="master_expired"),
            message="the closing follower not flat after the master's order expired",
        )
        r = await api.http.get(f"/v1/orders/{order_id}", headers=api.auth(master))
        assert r.json()["master_execution"]["status"] == "expired"
        await api.settled(master, order_id)
        await _exactly_once(api, symbol, expected)
        assert await _sim_orders(api, master_sim, symbol) == []  # never placed
        assert [row["reason"] for row in await _rows(api, keeper, order_id)] == [None]
    finally:
        await _fault(api, master_sim, throttle_orders=False)
