"""Deleting a linked account with `?positions=close` (issue 11): its resting copies are canceled
and its copied positions closed, then it is gone, and nothing reaches it afterwards. Real API,
replicators, sweeper and simulator; the simulator's own orders are the truth."""

from __future__ import annotations

import os

import pytest

from tests.e2e.test_copy_safety import held, master, trade
from tests.helpers import Api, eventually

OPEN_AT_SIM = {"new", "accepted", "partially_filled", "pending_new"}


@pytest.fixture
async def symbol(api: Api) -> str:
    name = "D" + os.urandom(3).hex().upper()
    assert (await api.sim.put("/sim/prices", json={name: "100"})).status_code == 200
    return name


async def _sim_orders_of(api: Api, sim_account_id: str) -> list[dict[str, str]]:
    return [o for o in await api.sim_orders() if o["account_id"] == sim_account_id]


async def test_delete_with_positions_close_flattens_then_removes_the_account(
    api: Api, symbol: str
) -> None:
    master_id, token, account = await master(api)
    follower = await api.follower(master_id, {"mode": "multiplier", "factor": "1"})
    auth, path = api.auth(follower["token"]), f"/v1/accounts/{follower['account_id']}"
    await trade(api, token, account, symbol, "buy", "10")
    resting = await api.order(
        token, account, symbol=symbol, qty="3", type="limit", limit_price="80", time_in_force="gtc"
    )
    await api.settled(token, resting.json()["order_id"])
    await held(api, follower, symbol, "10")
    at_sim = await _sim_orders_of(api, follower["sim_account_id"])
    assert any(o["status"] in OPEN_AT_SIM for o in at_sim), at_sim  # the resting copy

    r = await api.http.delete(path, headers=auth)
    assert r.status_code == 409 and r.json()["error"]["code"] == "account_in_use"
    r = await api.http.delete(path, headers=auth, params={"positions": "sideways"})
    assert r.status_code == 422
    r = await api.http.delete(path, headers=auth, params={"positions": "close"})
    assert r.status_code == 202, r.text
    assert r.json()["account_id"] == follower["account_id"] and r.json()["deleting"] is True
    again = await api.http.delete(path, headers=auth, params={"positions": "close"})
    assert again.status_code in (202, 204, 404), again.text  # deleting, or already gone

    await held(api, follower, symbol, "0")  # closed at the broker

    async def gone() -> bool:
        listed = (await api.http.get("/v1/accounts", headers=auth)).json()
        return follower["account_id"] not in [a["account_id"] for a in listed]

    await eventually(gone, timeout_s=30, message="the flat account is deleted")
    at_sim = await _sim_orders_of(api, follower["sim_account_id"])
    assert not [o for o in at_sim if o["status"] in OPEN_AT_SIM], at_sim  # resting copy canceled
    assert (await api.http.get("/v1/subscriptions", headers=auth)).json() == []

    # Afterwards the master trades on: nothing is recorded for, or sent to, the deleted account.
    sent_before = len(at_sim)
    later = await trade(api, token, account, symbol, "buy", "5")
    copies = (await api.http.get("/v1/copies", headers=auth, params={"order_id": later})).json()
    assert copies == []
    assert len(await _sim_orders_of(api, follower["sim_account_id"])) == sent_before
    r = await api.http.post(f"{path}/resume", headers=auth)
    assert r.status_code == 404
    r = await api.http.post(
        "/v1/subscriptions",
        headers=auth,
        json={
            "master_id": master_id,
            "account_id": follower["account_id"],
            "sizing": {"mode": "fixed", "qty": "1"},
        },
    )
    assert r.status_code == 404


async def test_an_account_being_deleted_takes_nothing_new(api: Api, symbol: str) -> None:
    """While the flatten waits (an order on the master's account keeps a leg open), the account
    refuses new subscriptions, stays halted, and a master's account takes no new orders."""
    master_id, token, account = await master(api)
    follower = await api.follower(master_id, {"mode": "multiplier", "factor": "1"})
    await trade(api, token, account, symbol, "buy", "2")
    # The master's own account: its resting master leg is an open leg, so it is in use.
    resting = await api.order(
        token, account, symbol=symbol, qty="1", type="limit", limit_price="50", time_in_force="gtc"
    )
    assert resting.status_code == 202
    await api.settled(token, resting.json()["order_id"])
    r = await api.http.delete(
        f"/v1/accounts/{account}", headers=api.auth(token), params={"positions": "close"}
    )
    assert r.status_code == 202, r.text
    r = await api.order(token, account, symbol=symbol, qty="1")
    assert r.status_code == 409 and r.json()["error"]["code"] == "account_deleting", r.text
    r = await api.http.post(f"/v1/accounts/{account}/resume", headers=api.auth(token))
    assert r.status_code == 409 and r.json()["error"]["code"] == "account_deleting", r.text
    await api.http.post(f"/v1/orders/{resting.json()['order_id']}/cancel", headers=api.auth(token))

    async def gone() -> bool:
        listed = (await api.http.get("/v1/accounts", headers=api.auth(token))).json()
        return account not in [a["account_id"] for a in listed]

    await eventually(gone, timeout_s=30, message="the master's account is deleted once flat")
    await held(api, follower, symbol, "2")  # a master's account going away closes no copy
