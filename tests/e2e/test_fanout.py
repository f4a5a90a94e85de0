"""End to end through the HTTP API, JetStream, two replicator processes and the simulator."""

from __future__ import annotations

import asyncio
from collections import Counter
from decimal import Decimal
from typing import Any

from tests.helpers import Api, Stack, eventually

FOLLOWERS = 200


def _sizing(index: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Three kinds of follower: fixed 3, multiplier 2, multiplier 5 clamped at max_qty 30."""
    if index % 3 == 0:
        return {"mode": "fixed", "qty": "3"}, None
    if index % 3 == 1:
        return {"mode": "multiplier", "factor": "2"}, None
    return {"mode": "multiplier", "factor": "5"}, {"max_qty": "30", "on_cap": "clamp"}


def _expected_qty(index: int, master_qty: Decimal) -> Decimal:
    if index % 3 == 0:
        return Decimal(3)
    if index % 3 == 1:
        return master_qty * 2
    return min(master_qty * 5, Decimal(30))


async def test_one_order_reaches_every_follower_exactly_once(api: Api, stack: Stack) -> None:
    master_id, master_token = await api.user("master")
    master_account, _ = await api.sim_account(master_token)
    semaphore = asyncio.Semaphore(20)

    async def make(index: int) -> dict[str, str]:
        sizing, caps = _sizing(index)
        async with semaphore:
            return await api.follower(master_id, sizing, caps)

    followers = await asyncio.gather(*(make(i) for i in range(FOLLOWERS)))

    response = await api.order(master_token, master_account, qty="10", client_order_id="first")
    assert response.status_code == 202, response.text
    accepted = response.json()
    order_id = accepted["order_id"]
    assert accepted["status"] == "accepted"

    async def settled() -> dict[str, Any] | None:
        r = await api.http.get(f"/v1/orders/{order_id}", headers=api.auth(master_token))
        body: dict[str, Any] = r.json()
        return body if body["status"] == "replicated" else None

    summary = await eventually(settled, timeout_s=30, message="fan-out did not settle")
    assert summary["legs"] == {"total": FOLLOWERS, "by_status": {"filled": FOLLOWERS}}
    assert summary["fanout_ms"] is not None and summary["fanout_ms"] > 0

    # Exactly one order per follower account at the simulator, with the right quantity.
    by_sim_account = {f["sim_account_id"]: i for i, f in enumerate(followers)}
    orders = [o for o in await api.sim_orders() if o["account_id"] in by_sim_account]
    counts = Counter(o["account_id"] for o in orders)
    assert len(counts) == FOLLOWERS and set(counts.values()) == {1}
    for order in orders:
        index = by_sim_account[order["account_id"]]
        assert Decimal(order["qty"]) == _expected_qty(index, Decimal(10)), order
        assert order["side"] == "buy" and order["symbol"] == "AAPL"

    # Four shards of at most 60 followers, each recorded once, spread over both workers.
    shard_lines = {
        log.name: [
            line for line in log.read_text().splitlines() if f"order {order_id} shard" in line
        ]
        for log in sorted(stack.log_dir.glob("replicator-*.log"))
    }
    recorded = sorted(
        line.split(" shard ")[1].split(":")[0] for v in shard_lines.values() for line in v
    )
    assert recorded == ["1/4", "2/4", "3/4", "4/4"], shard_lines
    assert all(shard_lines.values()), f"a worker took no shard: {shard_lines}"

    # Replaying the same POST returns the same order and sends nothing new.
    replay = await api.order(master_token, master_account, qty="10", client_order_id="first")
    assert replay.status_code == 202
    assert replay.json() == accepted
    # A different body under the same key is a conflict.
    conflict = await api.order(master_token, master_account, qty="11", client_order_id="first")
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "idempotency_conflict"
    # Neither created a second order (the API answers after its insert, so no wait is needed);
    # a re-publish would carry the same order id, whose legs already exist.
    orders_of_master = (await api.http.get("/v1/orders", headers=api.auth(master_token))).json()
    assert [o["order_id"] for o in orders_of_master] == [order_id]
    again = (await api.http.get(f"/v1/orders/{order_id}", headers=api.auth(master_token))).json()
    assert again["legs"] == {"total": FOLLOWERS, "by_status": {"filled": FOLLOWERS}}
    assert (
        len([o for o in await api.sim_orders() if o["account_id"] in by_sim_account]) == FOLLOWERS
    )

    # Each follower sees its own copy, and only its own.
    follower = followers[1]
    copies = await api.http.get("/v1/copies", headers=api.auth(follower["token"]))
    assert copies.status_code == 200
    rows = copies.json()
    assert len(rows) == 1
    assert rows[0]["order_id"] == order_id and rows[0]["account_id"] == follower["account_id"]
    assert rows[0]["qty"] == "20" and rows[0]["status"] == "filled"
    assert len(rows[0]["client_order_id"]) == 20 and rows[0]["broker_order_id"]
    clamped = (await api.http.get("/v1/copies", headers=api.auth(followers[2]["token"]))).json()
    assert clamped[0]["qty"] == "30" and clamped[0]["reason"] == "clamped_max_qty"
    assert clamped[0]["details"]["raw_qty"] == "50"


async def test_paused_and_halted_followers_are_skipped_with_a_reason(api: Api) -> None:
    master_id, master_token = await api.user("master")
    master_account, _ = await api.sim_account(master_token)
    active = await api.follower(master_id, {"mode": "fixed", "qty": "1"})
    paused = await api.follower(master_id, {"mode": "fixed", "qty": "1"})
    halted = await api.follower(master_id, {"mode": "fixed", "qty": "1"})
    blocked = await api.follower(
        master_id, {"mode": "fixed", "qty": "1"}, filters={"symbols_block": ["AAPL"]}
    )
    subs = (await api.http.get("/v1/subscriptions", headers=api.auth(paused["token"]))).json()
    r = await api.http.patch(
        f"/v1/subscriptions/{subs[0]['subscription_id']}",
        headers=api.auth(paused["token"]),
        json={"paused": True},
    )
    assert r.status_code == 200 and r.json()["paused"] is True
    r = await api.http.post(
        f"/v1/accounts/{halted['account_id']}/halt", headers=api.auth(halted["token"])
    )
    assert r.status_code == 200 and r.json()["halted"] is True

    order = (await api.order(master_token, master_account)).json()

    async def reason(follower: dict[str, str]) -> tuple[str, str | None] | None:
        rows = (
            await api.http.get(
                "/v1/copies",
                headers=api.auth(follower["token"]),
                params={"order_id": order["order_id"]},
            )
        ).json()
        return (
            (rows[0]["status"], rows[0]["reason"])
            if rows and rows[0]["status"] in ("filled", "skipped")
            else None
        )

    assert await eventually(lambda: reason(active)) == ("filled", None)
    assert await eventually(lambda: reason(paused)) == ("skipped", "paused")
    assert await eventually(lambda: reason(halted)) == ("skipped", "halted")
    assert await eventually(lambda: reason(blocked)) == ("skipped", "symbol_blocked")
    sim_accounts = {o["account_id"] for o in await api.sim_orders()}
    assert active["sim_account_id"] in sim_accounts
    assert (
        not {paused["sim_account_id"], halted["sim_account_id"], blocked["sim_account_id"]}
        & sim_accounts
    )

    # Resume: the next order is copied again.
    r = await api.http.post(
        f"/v1/accounts/{halted['account_id']}/resume", headers=api.auth(halted["token"])
    )
    assert r.status_code == 200 and r.json()["halted"] is False
    second = (await api.order(master_token, master_account)).json()

    async def copied() -> bool:
        rows = (
            await api.http.get(
                "/v1/copies",
                headers=api.auth(halted["token"]),
                params={"order_id": second["order_id"]},
            )
        ).json()
        return bool(rows) and rows[0]["status"] == "filled"

    await eventually(copied)


async def test_broker_rejection_is_recorded_not_retried(api: Api) -> None:
    master_id, master_token = await api.user("master")
    master_account, _ = await api.sim_account(master_token)
    _, token = await api.user("follower")
    poor_account, poor_sim = await api.sim_account(token, cash="10")
    r = await api.http.post(
        "/v1/subscriptions",
        headers=api.auth(token),
        json={
            "master_id": master_id,
            "account_id": poor_account,
            "sizing": {"mode": "fixed", "qty": "5"},
        },
    )
    assert r.status_code == 201
    order = (await api.order(master_token, master_account)).json()

    async def rejected() -> dict[str, Any] | None:
        rows = (await api.http.get("/v1/copies", headers=api.auth(token))).json()
        return rows[0] if rows and rows[0]["status"] == "rejected" else None

    row = await eventually(rejected)
    assert row["order_id"] == order["order_id"]
    assert "insufficient" in row["reason"]
    stats = (await api.sim.get("/sim/stats")).json()["accounts"][poor_sim]
    assert stats["orders_received"] == 1 and stats["orders"] == 0
