"""Copy safety end to end: a follower is never left holding what its master has left.

Real API, JetStream, two replicator processes, the sweeper and the simulator; the simulator's
own orders are the truth for every position asserted here.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.infra.auth import hash_password
from services.infra.db.repositories.users import create_user
from tests.helpers import Api, eventually

D = Decimal


@pytest.fixture
async def symbol(api: Api) -> str:
    name = "S" + os.urandom(3).hex().upper()
    assert (await api.sim.put("/sim/prices", json={name: "100"})).status_code == 200
    return name


@pytest.fixture
async def admin(api: Api, engine: AsyncEngine) -> str:
    email = f"admin-{uuid.uuid4().hex[:8]}@example.test"
    async with engine.begin() as conn:
        await create_user(
            conn, str(uuid.uuid4()), email, hash_password("admin password!", 1024), "admin"
        )
    response = await api.http.post(
        "/v1/auth/token", json={"email": email, "password": "admin password!"}
    )
    token: str = response.json()["access_token"]
    return token


async def master(api: Api) -> tuple[str, str, str]:
    master_id, token = await api.user("master")
    account_id, _ = await api.sim_account(token)
    return master_id, token, account_id


async def trade(api: Api, token: str, account: str, symbol: str, side: str, qty: str) -> str:
    response = await api.order(token, account, symbol=symbol, side=side, qty=qty)
    assert response.status_code == 202, response.text
    order_id: str = response.json()["order_id"]
    await api.settled(token, order_id)
    return order_id


async def held(api: Api, follower: dict[str, str], symbol: str, qty: str) -> None:
    """Wait until the simulator shows the follower holding `qty` (its fills are the truth)."""

    async def probe() -> bool:
        return await api.position(follower["sim_account_id"], symbol) == D(qty)

    await eventually(probe, timeout_s=20, message=f"position {qty} of {symbol}")


async def test_two_masters_one_account_each_master_closes_its_own(api: Api, symbol: str) -> None:
    a_id, a, a_account = await master(api)
    b_id, b, b_account = await master(api)
    follower = await api.follower(a_id, {"mode": "multiplier", "factor": "1"})
    await api.subscribe(
        follower["token"], b_id, follower["account_id"], {"mode": "multiplier", "factor": "1"}
    )
    await trade(api, a, a_account, symbol, "buy", "10")
    await trade(api, b, b_account, symbol, "buy", "20")
    await held(api, follower, symbol, "30")

    close_a = await trade(api, a, a_account, symbol, "sell", "10")  # A leaves: a full close
    copy = await api.copy_of(follower, close_a)
    assert (copy["side"], copy["qty"], copy["status"]) == ("sell", "10", "filled")
    await held(api, follower, symbol, "20")  # B's copies stay

    half_b = await trade(api, b, b_account, symbol, "sell", "10")
    assert (await api.copy_of(follower, half_b))["qty"] == "10"
    await trade(api, b, b_account, symbol, "sell", "10")
    await held(api, follower, symbol, "0")


async def test_a_paused_follower_takes_nothing_new_but_follows_exits(api: Api, symbol: str) -> None:
    master_id, token, account = await master(api)
    follower = await api.follower(master_id, {"mode": "multiplier", "factor": "1"})
    await trade(api, token, account, symbol, "buy", "10")
    await held(api, follower, symbol, "10")
    subscription = (
        await api.http.get("/v1/subscriptions", headers=api.auth(follower["token"]))
    ).json()[0]
    r = await api.http.patch(
        f"/v1/subscriptions/{subscription['subscription_id']}",
        headers=api.auth(follower["token"]),
        json={"paused": True},
    )
    assert r.status_code == 200 and r.json()["paused"] is True

    more = await trade(api, token, account, symbol, "buy", "5")
    copy = await api.copy_of(follower, more)
    assert (copy["status"], copy["reason"]) == ("skipped", "paused")
    # The master reverses: sells 15 from +15. The follower's 10 are closed; nothing opens short.
    exit_ = await trade(api, token, account, symbol, "sell", "25")
    copy = await api.copy_of(follower, exit_)
    assert (copy["side"], copy["qty"], copy["reason"]) == ("sell", "10", "paused")
    await held(api, follower, symbol, "0")


async def test_a_side_filter_stops_entries_not_exits(api: Api, symbol: str) -> None:
    master_id, token, account = await master(api)
    follower = await api.follower(
        master_id, {"mode": "multiplier", "factor": "1"}, filters={"sides": ["buy"]}
    )
    await trade(api, token, account, symbol, "buy", "10")
    exit_ = await trade(api, token, account, symbol, "sell", "10")
    copy = await api.copy_of(follower, exit_)
    assert (copy["side"], copy["qty"], copy["details"]["gate"]) == ("sell", "10", "side_filtered")
    await held(api, follower, symbol, "0")


async def test_a_halted_follower_s_resting_copy_may_shrink_never_grow(
    api: Api, symbol: str
) -> None:
    master_id, token, account = await master(api)
    follower = await api.follower(master_id, {"mode": "multiplier", "factor": "1"})
    response = await api.order(
        token, account, symbol=symbol, qty="2", type="limit", limit_price="80", time_in_force="gtc"
    )
    resting = response.json()["order_id"]
    await api.settled(token, resting)
    before = await api.copy_of(follower, resting)
    assert (before["qty"], before["status"]) == ("2", "accepted")
    r = await api.http.post(
        f"/v1/accounts/{follower['account_id']}/halt", headers=api.auth(follower["token"])
    )
    assert r.status_code == 200

    async def replaced(qty: str, broker_order_id: str) -> dict[str, Any] | None:
        copy = await api.copy_of(follower, resting)
        return copy if copy["broker_order_id"] != broker_order_id and copy["qty"] == qty else None

    r = await api.http.patch(
        f"/v1/orders/{resting}", headers=api.auth(token), json={"qty": "20", "limit_price": "81"}
    )
    assert r.status_code == 202
    grown = await eventually(lambda: replaced("2", before["broker_order_id"]), timeout_s=20)
    assert grown["details"]["replaced"][-1]["note"] == "replace_growth_refused: halted"
    sim = {o["id"]: o for o in await api.sim_orders()}
    assert (sim[grown["broker_order_id"]]["qty"], sim[grown["broker_order_id"]]["limit_price"]) == (
        "2",
        "81",
    )

    r = await api.http.patch(f"/v1/orders/{resting}", headers=api.auth(token), json={"qty": "1"})
    assert r.status_code == 202
    shrunk = await eventually(lambda: replaced("1", grown["broker_order_id"]), timeout_s=20)
    assert sim_qty(await api.sim_orders(), shrunk["broker_order_id"]) == "1"


def sim_qty(orders: list[dict[str, Any]], broker_order_id: str) -> str:
    qty: str = next(o["qty"] for o in orders if o["id"] == broker_order_id)
    return qty


async def _subscription_of(api: Api, follower: dict[str, str]) -> dict[str, Any] | None:
    rows = (await api.http.get("/v1/subscriptions", headers=api.auth(follower["token"]))).json()
    return rows[0] if rows else None


async def test_ending_a_subscription_follows_exits_until_flat(api: Api, symbol: str) -> None:
    master_id, token, account = await master(api)
    follower = await api.follower(master_id, {"mode": "multiplier", "factor": "1"})
    await trade(api, token, account, symbol, "buy", "10")
    subscription = await _subscription_of(api, follower)
    assert subscription is not None
    r = await api.http.delete(
        f"/v1/subscriptions/{subscription['subscription_id']}", headers=api.auth(follower["token"])
    )
    assert r.status_code == 204
    ending = await _subscription_of(api, follower)
    assert ending is not None and ending["ending_at"] is not None  # still following exits
    entry = await trade(api, token, account, symbol, "buy", "5")
    assert (await api.copy_of(follower, entry))["reason"] == "unsubscribed"
    await trade(api, token, account, symbol, "sell", "15")
    await held(api, follower, symbol, "0")

    async def removed() -> bool:
        return await _subscription_of(api, follower) is None

    await eventually(removed, timeout_s=20, message="the flat, ended subscription is removed")


async def test_ending_with_keep_leaves_the_positions_and_with_close_closes_them(
    api: Api, symbol: str
) -> None:
    master_id, token, account = await master(api)
    keeper = await api.follower(master_id, {"mode": "multiplier", "factor": "1"})
    closer = await api.follower(master_id, {"mode": "multiplier", "factor": "1"})
    await trade(api, token, account, symbol, "buy", "10")
    for follower, choice in ((keeper, "keep"), (closer, "close")):
        subscription = await _subscription_of(api, follower)
        assert subscription is not None
        r = await api.http.delete(
            f"/v1/subscriptions/{subscription['subscription_id']}",
            headers=api.auth(follower["token"]),
            params={"positions": choice},
        )
        assert r.status_code == 204
    assert await _subscription_of(api, keeper) is None
    await held(api, closer, symbol, "0")  # closed now, through a closing leg
    copies = (await api.http.get("/v1/copies", headers=api.auth(closer["token"]))).json()
    close = next(c for c in copies if c["side"] == "sell")
    assert (close["qty"], close["status"], close["reason"]) == (
        "10",
        "filled",
        "flatten: subscription",
    )
    await trade(api, token, account, symbol, "sell", "10")  # the master's exit reaches neither
    await held(api, keeper, symbol, "10")
    await held(api, closer, symbol, "0")
    r = await api.http.delete(
        f"/v1/subscriptions/{uuid.uuid4()}",
        headers=api.auth(keeper["token"]),
        params={"positions": "sideways"},
    )
    assert r.status_code == 422


async def test_a_master_halt_with_flatten_cancels_resting_copies_and_closes_positions(
    api: Api, admin: str, symbol: str
) -> None:
    master_id, token, account = await master(api)
    follower = await api.follower(master_id, {"mode": "multiplier", "factor": "1"})
    await trade(api, token, account, symbol, "buy", "10")
    response = await api.order(
        token, account, symbol=symbol, qty="3", type="limit", limit_price="80", time_in_force="gtc"
    )
    resting = response.json()["order_id"]
    await api.settled(token, resting)
    r = await api.http.post(
        f"/v1/admin/masters/{master_id}/halt", headers=api.auth(admin), json={"flatten": True}
    )
    assert r.status_code == 200 and r.json()["flatten_request_id"]
    await held(api, follower, symbol, "0")

    async def canceled() -> bool:
        return (await api.copy_of(follower, resting))["status"] == "canceled"

    await eventually(canceled, timeout_s=20)
    assert (await api.copy_of(follower, resting))["reason"] == "flatten"
    entry = await trade(api, token, account, symbol, "buy", "1")  # still halted afterwards
    assert (await api.copy_of(follower, entry))["reason"] == "master_halted"
    await api.http.post(f"/v1/admin/masters/{master_id}/resume", headers=api.auth(admin))


async def test_two_workers_race_two_masters_into_one_account_under_caps(
    api: Api, symbol: str
) -> None:
    a_id, a, a_account = await master(api)
    b_id, b, b_account = await master(api)
    caps = {"max_position": "12"}
    follower = await api.follower(a_id, {"mode": "multiplier", "factor": "1"}, caps=caps)
    await api.subscribe(
        follower["token"], b_id, follower["account_id"], {"mode": "multiplier", "factor": "1"}, caps
    )
    orders = [(a, a_account), (b, b_account)] * 5
    responses = await asyncio.gather(
        *(api.order(t, acct, symbol=symbol, qty="3") for t, acct in orders)
    )
    for (t, _), response in zip(orders, responses, strict=True):
        assert response.status_code == 202
        await api.settled(t, response.json()["order_id"])
    await held(api, follower, symbol, "24")  # 12 per master: each cap holds its own copies
    for t, acct in ((a, a_account), (b, b_account)):
        await trade(api, t, acct, symbol, "sell", "15")  # each master leaves
    await held(api, follower, symbol, "0")


async def test_an_account_halt_with_flatten_waits_for_the_broker_to_say_what_it_holds(
    api: Api, engine: AsyncEngine, symbol: str
) -> None:
    master_id, token, account = await master(api)
    follower = await api.follower(master_id, {"mode": "multiplier", "factor": "1"})
    await trade(api, token, account, symbol, "buy", "10")
    await held(api, follower, symbol, "10")
    sim_account = follower["sim_account_id"]
    r = await api.sim.put("/sim/faults", params={"account_id": sim_account}, json={"error_rate": 1})
    assert r.status_code == 200
    try:
        r = await api.http.post(
            f"/v1/accounts/{follower['account_id']}/halt",
            headers=api.auth(follower["token"]),
            json={"flatten": True},
        )
        assert r.status_code == 200 and r.json()["halted"] is True

        async def tried() -> bool:
            async with engine.connect() as conn:
                row = (
                    await conn.execute(
                        text(
                            "SELECT claimed_until IS NOT NULL AND done_at IS NULL "
                            "FROM flatten_requests WHERE scope = :s"
                        ),
                        {"s": f"account:{follower['account_id']}"},
                    )
                ).scalar_one()
            return bool(row)

        await eventually(tried, timeout_s=20, message="the sweeper took the flatten request")
        assert await api.position(sim_account, symbol) == 10  # nothing closed on a guess
    finally:
        await api.sim.put("/sim/faults", params={"account_id": sim_account}, json={"error_rate": 0})
    await held(api, follower, symbol, "0")  # once the broker answers, the copy is closed
