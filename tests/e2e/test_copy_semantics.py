"""Copy semantics end to end: every sizing mode, exits after drift, caps under concurrency,
cancels, halts. Real API, JetStream, two replicator processes and the simulator."""

from __future__ import annotations

import asyncio
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from services.infra.auth import hash_password
from services.infra.db.repositories.orders import order_state
from services.infra.db.repositories.users import create_user
from tests.helpers import Api, eventually

D = Decimal


@pytest.fixture
async def symbol(api: Api) -> str:
    """A fresh symbol per test at price 100, so tests never share positions or prices."""
    import os

    name = "T" + os.urandom(3).hex().upper()
    r = await api.sim.put("/sim/prices", json={name: "100"})
    assert r.status_code == 200
    return name


async def test_every_sizing_mode(api: Api, symbol: str) -> None:
    master_id, master = await api.user("master")
    master_account, _ = await api.sim_account(master, cash="175000")
    followers = {
        "fixed": await api.follower(master_id, {"mode": "fixed", "qty": "7"}),
        "multiplier": await api.follower(master_id, {"mode": "multiplier", "factor": "0.5"}),
        "ratio25": await api.follower(master_id, {"mode": "equity_ratio"}, cash="25000"),
        "ratio50": await api.follower(master_id, {"mode": "equity_ratio"}, cash="50000"),
        "ratio100": await api.follower(master_id, {"mode": "equity_ratio"}, cash="100000"),
        "notional": await api.follower(master_id, {"mode": "notional", "amount": "1550"}),
        "risk": await api.follower(
            master_id, {"mode": "risk_percent", "percent": "1"}, cash="50000"
        ),
    }
    # IBKR's allocation example: 700 shares over equities 25k / 50k / 100k (master 175k).
    order = (await api.order(master, master_account, symbol=symbol, qty="700")).json()
    summary = await api.settled(master, order["order_id"])
    assert summary["master_execution"]["status"] == "filled"
    expected = {
        "fixed": "7",
        "multiplier": "350",
        "ratio25": "100",
        "ratio50": "200",
        "ratio100": "400",
        "notional": "15",
    }
    for name, qty in expected.items():
        copy = await api.copy_of(followers[name], order["order_id"])
        assert (copy["qty"], copy["status"]) == (qty, "filled"), (name, copy)
        assert await api.position(followers[name]["sim_account_id"], symbol) == D(qty)
    ratio = await api.copy_of(followers["ratio25"], order["order_id"])
    # The master's equity (175000) is shown only as the follower's ratio to it.
    assert "master_equity" not in ratio["details"]
    assert ratio["details"]["equity_ratio"] == "0.142857"
    assert ratio["details"]["follower_equity"] == "25000"
    notional = await api.copy_of(followers["notional"], order["order_id"])
    assert notional["details"]["reference_price"] == "100"
    assert notional["details"]["price_source"] == "last_price"
    risk = await api.copy_of(followers["risk"], order["order_id"])
    assert (risk["status"], risk["reason"]) == ("skipped", "no_stop_price")

    # risk_percent with a stop: 1% of 50k over |100 - 95| = 100 shares.
    stop_order = (
        await api.order(
            master, master_account, symbol=symbol, qty="10", type="stop", stop_price="95"
        )
    ).json()
    await api.settled(master, stop_order["order_id"])
    risk = await api.copy_of(followers["risk"], stop_order["order_id"])
    assert risk["qty"] == "100", risk


async def test_partial_close_after_drift_and_full_close(api: Api, symbol: str) -> None:
    master_id, master = await api.user("master")
    master_account, _ = await api.sim_account(master)
    mirror = await api.follower(master_id, {"mode": "multiplier", "factor": "1"})
    small = await api.follower(master_id, {"mode": "fixed", "qty": "3"})
    entry = (await api.order(master, master_account, symbol=symbol, qty="10")).json()
    await api.settled(master, entry["order_id"])
    assert await api.position(mirror["sim_account_id"], symbol) == 10

    # Drift: the mirror follower sells 4 by hand at its broker.
    sim_keys = await _sim_keys(api, mirror)
    r = await api.sim.post(
        "/v2/orders",
        headers=sim_keys,
        json={
            "symbol": symbol,
            "qty": "4",
            "side": "sell",
            "type": "market",
            "time_in_force": "day",
        },
    )
    assert r.status_code == 200

    half = (await api.order(master, master_account, symbol=symbol, qty="5", side="sell")).json()
    await api.settled(master, half["order_id"])
    copy = await api.copy_of(mirror, half["order_id"])
    # Half of what it still holds (6), not half of what it once copied (10).
    assert (copy["side"], copy["qty"], copy["details"]["close_fraction"]) == ("sell", "3", "0.5")
    assert await api.position(mirror["sim_account_id"], symbol) == 3
    assert (await api.copy_of(small, half["order_id"]))["qty"] == "1"  # floor(3 * 0.5)

    close = (await api.order(master, master_account, symbol=symbol, qty="5", side="sell")).json()
    await api.settled(master, close["order_id"])
    assert (await api.copy_of(mirror, close["order_id"]))["qty"] == "3"
    assert (await api.copy_of(small, close["order_id"]))["qty"] == "2"
    assert await api.position(mirror["sim_account_id"], symbol) == 0
    assert await api.position(small["sim_account_id"], symbol) == 0

    # Nothing left to close: a further master sell (opening a short) is sized normally …
    short = (await api.order(master, master_account, symbol=symbol, qty="2", side="sell")).json()
    await api.settled(master, short["order_id"])
    assert (await api.copy_of(mirror, short["order_id"]))["qty"] == "2"


async def _sim_keys(api: Api, follower: dict[str, str]) -> dict[str, str]:
    """The simulator keys behind a follower account, recovered from the simulator itself."""
    accounts = api.sim_keys  # recorded by Api.sim_account
    key_id, secret = accounts[follower["sim_account_id"]]
    return {"APCA-API-KEY-ID": key_id, "APCA-API-SECRET-KEY": secret}


async def test_caps_hold_under_concurrency(api: Api, symbol: str) -> None:
    """20 orders from two masters at once into accounts that copy both, two workers: no cap is
    exceeded at the broker (max_position per subscription, max_orders_per_day per account)."""
    master_a_id, master_a = await api.user("master")
    account_a, _ = await api.sim_account(master_a)
    master_b_id, master_b = await api.user("master")
    account_b, _ = await api.sim_account(master_b)
    caps_position = {"max_position": "25"}
    caps_orders = {"max_orders_per_day": 3}
    followers = []
    for caps in (caps_position, caps_position, caps_orders, caps_orders):
        _, token = await api.user("follower")
        account_id, sim_id = await api.sim_account(token)
        for master_id in (master_a_id, master_b_id):
            await api.subscribe(
                token, master_id, account_id, {"mode": "multiplier", "factor": "1"}, caps
            )
        followers.append(
            {"token": token, "account_id": account_id, "sim_account_id": sim_id, "caps": caps}
        )

    posts = [api.order(master_a, account_a, symbol=symbol, qty="4") for _ in range(10)]
    posts += [api.order(master_b, account_b, symbol=symbol, qty="4") for _ in range(10)]
    responses = await asyncio.gather(*posts)
    assert all(r.status_code == 202 for r in responses)
    tokens = [master_a] * 10 + [master_b] * 10
    for token, response in zip(tokens, responses, strict=True):
        await api.settled(token, response.json()["order_id"], timeout_s=60)

    sim_orders = await api.sim_orders()
    for follower in followers:
        mine = [o for o in sim_orders if o["account_id"] == follower["sim_account_id"]]
        rows = (
            await api.http.get(
                "/v1/copies", headers=api.auth(follower["token"]), params={"limit": 100}
            )
        ).json()
        assert len(rows) == 20  # every leg accounted for: one per order
        statuses = Counter((row["status"], row["reason"]) for row in rows)
        if "max_position" in follower["caps"]:
            # The cap is each subscription's own: 25 copied from each master (copies belong to
            # the subscription that made them), so 50 in the account at the broker.
            position = sum(D(o["filled_qty"]) for o in mine)
            assert position <= 50, (position, statuses)
            assert position == 50  # clamped to the caps, not short of them
            per_master = Counter()
            for row in rows:
                per_master[row["master_id"]] += D(row["filled_qty"])
            assert per_master == {master_a_id: 25, master_b_id: 25}, per_master
            assert statuses[("skipped", "cap_max_position")] >= 1
        else:
            assert len(mine) == 3, statuses
            assert statuses[("skipped", "cap_max_orders_per_day")] == 17


async def test_daily_loss_limit_is_close_only(api: Api, symbol: str) -> None:
    master_id, master = await api.user("master")
    master_account, _ = await api.sim_account(master)
    follower = await api.follower(
        master_id,
        {"mode": "multiplier", "factor": "1"},
        caps={"daily_loss_limit": "500"},
        cash="100000",
    )
    entry = (await api.order(master, master_account, symbol=symbol, qty="100")).json()
    await api.settled(master, entry["order_id"])
    await api.sim.put("/sim/prices", json={symbol: "90"})  # follower now down 1,000 today
    # Part of the scenario, not a wait for a condition: let the cached equity age past
    # COPYTRADE_EQUITY_MAX_AGE_S (0.2 s in the e2e stack) so the next plan reads the loss.
    await asyncio.sleep(0.3)
    more = (await api.order(master, master_account, symbol=symbol, qty="10")).json()
    await api.settled(master, more["order_id"])
    copy = await api.copy_of(follower, more["order_id"])
    assert (copy["status"], copy["reason"]) == ("skipped", "daily_loss_limit")
    close = (await api.order(master, master_account, symbol=symbol, qty="110", side="sell")).json()
    await api.settled(master, close["order_id"])
    copy = await api.copy_of(follower, close["order_id"])
    assert (copy["status"], copy["qty"], copy["side"]) == ("filled", "100", "sell")
    assert await api.position(follower["sim_account_id"], symbol) == 0


async def test_master_cancel_reaches_every_open_leg(api: Api, symbol: str) -> None:
    master_id, master = await api.user("master")
    master_account, master_sim = await api.sim_account(master)
    followers = [await api.follower(master_id, {"mode": "fixed", "qty": "2"}) for _ in range(5)]
    resting = (
        await api.order(
            master,
            master_account,
            symbol=symbol,
            qty="5",
            type="limit",
            limit_price="80",
            time_in_force="gtc",
        )
    ).json()
    summary = await api.settled(master, resting["order_id"])
    assert summary["legs"]["by_status"] == {"accepted": 5}
    r = await api.http.post(f"/v1/orders/{resting['order_id']}/cancel", headers=api.auth(master))
    assert r.status_code == 202 and r.json()["cancel_requested"] is True

    async def all_canceled() -> dict[str, Any] | None:
        body: dict[str, Any] = (
            await api.http.get(f"/v1/orders/{resting['order_id']}", headers=api.auth(master))
        ).json()
        done = (
            body["legs"]["by_status"] == {"canceled": 5}
            and body["master_execution"]["status"] == "canceled"
        )
        return body if done else None

    await eventually(all_canceled, timeout_s=15)
    accounts = {f["sim_account_id"] for f in followers} | {master_sim}
    at_sim = [o for o in await api.sim_orders() if o["account_id"] in accounts]
    assert len(at_sim) == 6 and {o["status"] for o in at_sim} == {"canceled"}
    copy = await api.copy_of(followers[0], resting["order_id"])
    assert copy["reason"] == "master_canceled"
    _, other = await api.user("master")
    r = await api.http.post(f"/v1/orders/{resting['order_id']}/cancel", headers=api.auth(other))
    assert r.status_code == 404


async def test_admin_halts(api: Api, engine: AsyncEngine, symbol: str) -> None:
    import uuid

    admin_email = f"admin-{uuid.uuid4().hex[:8]}@example.test"
    async with engine.begin() as conn:
        await create_user(
            conn, str(uuid.uuid4()), admin_email, hash_password("admin password!", 1024), "admin"
        )
    admin = (
        await api.http.post(
            "/v1/auth/token", json={"email": admin_email, "password": "admin password!"}
        )
    ).json()["access_token"]
    master_id, master = await api.user("master")
    master_account, _ = await api.sim_account(master)
    follower = await api.follower(master_id, {"mode": "fixed", "qty": "1"})

    r = await api.http.post(f"/v1/admin/masters/{master_id}/halt", headers=api.auth(admin))
    assert r.status_code == 200 and r.json() == {"scope": f"master:{master_id}", "halted": True}
    assert (await api.http.post("/v1/admin/halt", headers=api.auth(master))).status_code == 403
    order = (await api.order(master, master_account, symbol=symbol)).json()
    await api.settled(master, order["order_id"])
    copy = await api.copy_of(follower, order["order_id"])
    assert (copy["status"], copy["reason"]) == ("skipped", "master_halted")

    r = await api.http.post(f"/v1/admin/masters/{master_id}/resume", headers=api.auth(admin))
    assert r.status_code == 200
    r = await api.http.post("/v1/admin/halt", headers=api.auth(admin))
    assert r.status_code == 200
    try:
        order = (await api.order(master, master_account, symbol=symbol)).json()
        await api.settled(master, order["order_id"])
        copy = await api.copy_of(follower, order["order_id"])
        assert (copy["status"], copy["reason"]) == ("skipped", "global_halt")
        halts = (await api.http.get("/v1/admin/halts", headers=api.auth(admin))).json()
        assert {"scope": "global", "halted": True} in halts
    finally:
        await api.http.post("/v1/admin/resume", headers=api.auth(admin))
    order = (await api.order(master, master_account, symbol=symbol)).json()
    await api.settled(master, order["order_id"])
    assert (await api.copy_of(follower, order["order_id"]))["status"] == "filled"


async def test_master_replace_reaches_every_open_leg(api: Api, symbol: str) -> None:
    master_id, master = await api.user("master")
    master_account, master_sim = await api.sim_account(master)
    followers = {
        "double": await api.follower(master_id, {"mode": "multiplier", "factor": "2"}),
        "fixed": await api.follower(master_id, {"mode": "fixed", "qty": "3"}),
        "notional": await api.follower(master_id, {"mode": "notional", "amount": "800"}),
    }
    resting = (
        await api.order(
            master,
            master_account,
            symbol=symbol,
            qty="5",
            type="limit",
            limit_price="80",
            time_in_force="gtc",
        )
    ).json()
    await api.settled(master, resting["order_id"])
    before = {name: await api.copy_of(f, resting["order_id"]) for name, f in followers.items()}
    assert {n: c["qty"] for n, c in before.items()} == {
        "double": "10",
        "fixed": "3",
        "notional": "10",
    }

    r = await api.http.patch(
        f"/v1/orders/{resting['order_id']}",
        headers=api.auth(master),
        json={"qty": "8", "limit_price": "85"},
    )
    assert r.status_code == 202 and r.json()["status"] == "replacing"

    expected = {"double": "16", "fixed": "3", "notional": "9"}

    async def replaced() -> dict[str, Any] | None:
        copies = {n: await api.copy_of(f, resting["order_id"]) for n, f in followers.items()}
        done = all(
            c["qty"] == expected[n] and c["broker_order_id"] != before[n]["broker_order_id"]
            for n, c in copies.items()
        )
        return copies if done else None

    copies = await eventually(replaced, timeout_s=15)
    summary = (
        await api.http.get(f"/v1/orders/{resting['order_id']}", headers=api.auth(master))
    ).json()
    assert summary["qty"] == "8" and summary["limit_price"] == "85"
    sim_orders = {o["id"]: o for o in await api.sim_orders()}
    for name, copy in copies.items():
        new, old = sim_orders[copy["broker_order_id"]], sim_orders[before[name]["broker_order_id"]]
        assert (new["qty"], new["limit_price"]) == (expected[name], "85")
        assert new["replaces"] == old["id"]
        assert old["status"] == "replaced"
        assert len(copy["client_order_id"]) == 20
    master_orders = [o for o in sim_orders.values() if o["account_id"] == master_sim]
    assert sorted(o["status"] for o in master_orders) == ["new", "replaced"]
    assert {o["qty"] for o in master_orders if o["status"] == "new"} == {"8"}

    # The market comes down through 85: every replaced order fills at its new size.
    await api.sim.put("/sim/prices", json={symbol: "84"})
    for name, follower in followers.items():
        assert await api.position(follower["sim_account_id"], symbol) == D(expected[name])

    async def filled() -> bool:
        copies = [await api.copy_of(f, resting["order_id"]) for f in followers.values()]
        return all(c["status"] == "filled" and c["filled_qty"] == c["qty"] for c in copies)

    await eventually(filled, timeout_s=10, message="fills at the broker were not picked up")
    bad = await api.http.patch(
        f"/v1/orders/{resting['order_id']}", headers=api.auth(master), json={"stop_price": "70"}
    )
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "unexpected_price"
    empty = await api.http.patch(
        f"/v1/orders/{resting['order_id']}", headers=api.auth(master), json={}
    )
    assert empty.status_code == 422 and empty.json()["error"]["code"] == "empty_replace"


async def test_master_position_cache_is_used_only_while_nothing_can_have_moved_it(
    api: Api, engine: AsyncEngine, symbol: str
) -> None:
    master_id, master = await api.user("master")
    master_account, master_sim = await api.sim_account(master)
    follower = await api.follower(master_id, {"mode": "fixed", "qty": "2"})

    async def reads() -> int:
        stats = (await api.sim.get("/sim/stats")).json()["accounts"][master_sim]
        return int(stats["position_reads"])

    async def reads_settle_at(expected: int) -> None:
        await eventually(lambda: _equals(reads(), expected), timeout_s=10)
        # A quiet period for the negative half ("and no further read"): nothing signals that
        # a read will not come, so time has to pass here.
        await asyncio.sleep(0.3)
        assert await reads() == expected

    async def planned_position(order_id: str) -> str:
        async with engine.connect() as conn:
            state = await order_state(conn, order_id)
        assert state is not None
        return str(state.plan["context"]["master_position"])

    entry = (await api.order(master, master_account, symbol=symbol, qty="10")).json()
    await api.settled(master, entry["order_id"])
    # One read to plan (nothing cached yet), one after the master's own order is done.
    await reads_settle_at(2)
    assert await planned_position(entry["order_id"]) == "0"

    exit_ = (await api.order(master, master_account, symbol=symbol, qty="10", side="sell")).json()
    await api.settled(master, exit_["order_id"])
    copy = await api.copy_of(follower, exit_["order_id"])
    assert (copy["side"], copy["qty"], copy["details"]["close_fraction"]) == ("sell", "2", "1")
    # Planned from the cache (the master's own fill was read after it settled): only the
    # refresh after this order reached the broker.
    await reads_settle_at(3)
    assert await planned_position(exit_["order_id"]) == "10"

    # A resting master order could fill at any moment: while it is open, plans read live.
    resting = (
        await api.order(
            master,
            master_account,
            symbol=symbol,
            qty="1",
            type="limit",
            limit_price="80",
            time_in_force="gtc",
        )
    ).json()
    await api.settled(master, resting["order_id"])
    await reads_settle_at(3)  # planned from the cache; not done, so no refresh
    market = (await api.order(master, master_account, symbol=symbol, qty="1")).json()
    await api.settled(master, market["order_id"])
    await reads_settle_at(5)  # a live read to plan, and the refresh after it filled
    assert await planned_position(market["order_id"]) == "0"


async def _equals(value: Any, expected: int) -> bool:
    return bool(await value == expected)
