"""The simulator over its ASGI app: Alpaca wire shapes, fills, dedup, faults."""

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from brokers.sim.app import build_app

SCHEMA = json.loads(
    (
        Path(__file__).resolve().parents[1] / "resources" / "alpaca" / "schema_fields.json"
    ).read_text()
)


@pytest.fixture
async def sim() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(seed=7))
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
        yield client


async def account(sim: httpx.AsyncClient, cash: str = "10000") -> dict[str, str]:
    r = await sim.post("/sim/accounts", json={"cash": cash})
    assert r.status_code == 201
    body = r.json()
    return {"APCA-API-KEY-ID": body["key_id"], "APCA-API-SECRET-KEY": body["secret_key"]}


def market(cid: str, qty: str = "2", side: str = "buy") -> dict[str, str]:
    return {
        "symbol": "AAPL",
        "qty": qty,
        "side": side,
        "type": "market",
        "time_in_force": "day",
        "client_order_id": cid,
    }


async def test_market_order_fills_with_spec_shaped_answers(sim: httpx.AsyncClient) -> None:
    keys = await account(sim)
    await sim.put("/sim/prices", json={"AAPL": "150.25"})
    r = await sim.post("/v2/orders", headers=keys, json=market("c1"))
    assert r.status_code == 200
    order = r.json()
    assert set(SCHEMA["Order"]["required"]) <= set(order)
    assert set(order) <= set(SCHEMA["Order"]["properties"])
    assert order["status"] == "filled" and order["filled_avg_price"] == "150.25"
    positions = (await sim.get("/v2/positions", headers=keys)).json()
    assert set(SCHEMA["Position"]["required"]) <= set(positions[0])
    assert positions[0]["qty"] == "2" and positions[0]["side"] == "long"
    acct = (await sim.get("/v2/account", headers=keys)).json()
    assert set(SCHEMA["Account"]["required"]) <= set(acct) <= set(SCHEMA["Account"]["properties"])
    assert acct["cash"] == "9699.5" and acct["equity"] == "10000"
    by_cid = await sim.get(
        "/v2/orders:by_client_order_id", headers=keys, params={"client_order_id": "c1"}
    )
    assert by_cid.json()["id"] == order["id"]


async def test_duplicate_client_order_id_is_422_unless_dedup_is_off(sim: httpx.AsyncClient) -> None:
    keys = await account(sim)
    assert (await sim.post("/v2/orders", headers=keys, json=market("dup"))).status_code == 200
    r = await sim.post("/v2/orders", headers=keys, json=market("dup"))
    assert r.status_code == 422 and r.json()["message"] == "client_order_id must be unique"
    await sim.put("/sim/faults", json={"dedup_client_order_id": False})
    assert (await sim.post("/v2/orders", headers=keys, json=market("dup"))).status_code == 200
    stats = (await sim.get("/sim/stats")).json()
    assert stats["orders_created"] == 2 and stats["duplicates_rejected"] == 1


async def test_limit_order_rests_until_the_price_crosses(sim: httpx.AsyncClient) -> None:
    keys = await account(sim)
    await sim.put("/sim/prices", json={"MSFT": "100"})
    body = {
        "symbol": "MSFT",
        "qty": "1",
        "side": "buy",
        "type": "limit",
        "limit_price": "95",
        "time_in_force": "gtc",
        "client_order_id": "l1",
    }
    order = (await sim.post("/v2/orders", headers=keys, json=body)).json()
    assert order["status"] == "new"
    open_orders = (await sim.get("/v2/orders", headers=keys, params={"status": "open"})).json()
    assert [o["id"] for o in open_orders] == [order["id"]]
    await sim.put("/sim/prices", json={"MSFT": "94.5"})
    filled = (await sim.get(f"/v2/orders/{order['id']}", headers=keys)).json()
    assert filled["status"] == "filled" and filled["filled_avg_price"] == "94.5"
    r = await sim.delete(f"/v2/orders/{order['id']}", headers=keys)
    assert r.status_code == 422  # a filled order cannot be canceled


async def test_cancel_and_replace(sim: httpx.AsyncClient) -> None:
    keys = await account(sim)
    body = {
        "symbol": "MSFT",
        "qty": "1",
        "side": "buy",
        "type": "limit",
        "limit_price": "50",
        "time_in_force": "gtc",
        "client_order_id": "r1",
    }
    order = (await sim.post("/v2/orders", headers=keys, json=body)).json()
    new = (
        await sim.patch(
            f"/v2/orders/{order['id']}", headers=keys, json={"qty": "3", "limit_price": "55"}
        )
    ).json()
    assert new["replaces"] == order["id"] and new["qty"] == "3" and new["limit_price"] == "55"
    old = (await sim.get(f"/v2/orders/{order['id']}", headers=keys)).json()
    assert old["status"] == "replaced" and old["replaced_by"] == new["id"]
    assert (await sim.delete(f"/v2/orders/{new['id']}", headers=keys)).status_code == 204
    assert (await sim.get(f"/v2/orders/{new['id']}", headers=keys)).json()["status"] == "canceled"


@pytest.mark.parametrize(
    "body,message",
    [
        (
            {
                "symbol": "AAPL",
                "qty": "-1",
                "side": "buy",
                "type": "market",
                "time_in_force": "day",
            },
            "qty must be > 0",
        ),
        (
            {
                "symbol": "AAPL",
                "qty": "1",
                "side": "hold",
                "type": "market",
                "time_in_force": "day",
            },
            "invalid side",
        ),
        (
            {"symbol": "AAPL", "qty": "1", "side": "buy", "type": "limit", "time_in_force": "day"},
            "limit_price is required for limit orders",
        ),
    ],
)
async def test_bad_orders_are_422(
    sim: httpx.AsyncClient, body: dict[str, str], message: str
) -> None:
    keys = await account(sim)
    r = await sim.post("/v2/orders", headers=keys, json=body)
    assert r.status_code == 422 and r.json()["message"] == message


async def test_auth_funds_and_rate_limit(sim: httpx.AsyncClient) -> None:
    r = await sim.get("/v2/account", headers={"APCA-API-KEY-ID": "nope"})
    assert r.status_code == 401 and r.json()["code"] == 40110000
    keys = await account(sim, cash="50")
    r = await sim.post("/v2/orders", headers=keys, json=market("big", qty="10"))
    assert r.status_code == 403 and r.json()["message"] == "insufficient buying power"
    rich = await account(sim)
    acct_id = (await sim.get("/v2/account", headers=rich)).json()["id"]
    await sim.put("/sim/faults", params={"account_id": acct_id}, json={"rate_limit_per_min": 2})
    assert (await sim.get("/v2/account", headers=rich)).status_code == 200
    assert (await sim.get("/v2/account", headers=rich)).status_code == 200
    limited = await sim.get("/v2/account", headers=rich)
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert (await sim.get("/v2/account", headers=keys)).status_code == 200  # other accounts fine


async def test_injected_errors(sim: httpx.AsyncClient) -> None:
    keys = await account(sim)
    await sim.put("/sim/faults", json={"error_rate": 1.0})
    r = await sim.post("/v2/orders", headers=keys, json=market("e1"))
    assert r.status_code == 500
    await sim.put("/sim/faults", json={"error_rate": 0.0})
    assert (await sim.post("/v2/orders", headers=keys, json=market("e1"))).status_code == 200
    r = await sim.put("/sim/faults", json={"bogus": 1})
    assert r.status_code == 422


async def test_timings_and_position_reads_for_benchmarks(sim: httpx.AsyncClient) -> None:
    headers = await account(sim)
    assert (await sim.post("/v2/orders", headers=headers, json=market("t1"))).status_code == 200
    between = time.time()
    assert (await sim.post("/v2/orders", headers=headers, json=market("t2"))).status_code == 200
    everything = (await sim.get("/sim/timings", params={"symbol": "AAPL"})).json()
    later = (await sim.get("/sim/timings", params={"symbol": "AAPL", "since": between})).json()
    assert len(everything) == 2 and len(later) == 1 and later[0]["received_at"] >= between
    assert (await sim.get("/sim/timings", params={"symbol": "MSFT"})).json() == []
    bad = await sim.get("/sim/timings", params={"symbol": "AAPL", "since": "soon"})
    assert bad.status_code == 422

    me = (await sim.get("/v2/account", headers=headers)).json()["id"]
    for _ in range(3):
        assert (await sim.get("/v2/positions", headers=headers)).status_code == 200
    assert (await sim.get("/sim/stats")).json()["accounts"][me]["position_reads"] == 3


async def test_day_orders_expire_when_the_day_ends(sim: httpx.AsyncClient) -> None:
    """Alpaca's close: resting day orders expire keeping their fills; gtc orders rest on."""
    mine, other = await account(sim), await account(sim)
    await sim.put("/sim/prices", json={"AAPL": "100"})

    async def rest(keys: dict[str, str], qty: str, tif: str) -> str:
        body = {"symbol": "AAPL", "side": "buy", "type": "limit", "limit_price": "90"}
        r = await sim.post(
            "/v2/orders", headers=keys, json={**body, "qty": qty, "time_in_force": tif}
        )
        assert r.status_code == 200 and r.json()["status"] == "new", r.text
        return str(r.json()["id"])

    day, gtc, theirs = (
        await rest(mine, "2", "day"),
        await rest(mine, "1", "gtc"),
        await rest(other, "1", "day"),
    )
    [sim_id] = {o["account_id"] for o in (await sim.get("/sim/orders")).json() if o["id"] == day}
    r = await sim.post("/sim/day", params={"account_id": sim_id})
    assert r.status_code == 200 and r.json() == {"accounts": 1, "expired": 1}
    assert (await sim.post("/sim/day", params={"account_id": "nope"})).status_code == 404
    expired = (await sim.get(f"/v2/orders/{day}", headers=mine)).json()
    assert expired["status"] == "expired" and expired["expired_at"] is not None
    assert (await sim.get(f"/v2/orders/{gtc}", headers=mine)).json()["status"] == "new"
    assert (await sim.get(f"/v2/orders/{theirs}", headers=other)).json()["status"] == "new"
    assert (await sim.post("/sim/day")).json()["expired"] == 1  # every account: theirs now
    assert (await sim.get(f"/v2/orders/{theirs}", headers=other)).json()["status"] == "expired"


async def test_no_liquidity_leaves_orders_resting(sim: httpx.AsyncClient) -> None:
    keys = await account(sim)
    r = await sim.post("/sim/accounts", json={"cash": "1000"})
    dry_id = r.json()["account_id"]
    dry = {"APCA-API-KEY-ID": r.json()["key_id"], "APCA-API-SECRET-KEY": r.json()["secret_key"]}
    r = await sim.put("/sim/faults", params={"account_id": dry_id}, json={"no_liquidity": True})
    assert r.status_code == 200, r.text
    resting = (await sim.post("/v2/orders", headers=dry, json=market("d1"))).json()
    assert resting["status"] == "new" and resting["filled_qty"] == "0"
    assert (await sim.put("/sim/prices", json={"AAPL": "1"})).status_code == 200
    assert (await sim.get(f"/v2/orders/{resting['id']}", headers=dry)).json()["status"] == "new"
    ioc = {**market("d2"), "time_in_force": "ioc"}
    assert (await sim.post("/v2/orders", headers=dry, json=ioc)).json()["status"] == "canceled"
    filled = (await sim.post("/v2/orders", headers=keys, json=market("d3"))).json()
    assert filled["status"] == "filled"  # other accounts trade as usual


async def test_throttled_orders_are_429_while_reads_are_served(sim: httpx.AsyncClient) -> None:
    r = await sim.post("/sim/accounts", json={"cash": "1000"})
    sim_id, keys = (
        r.json()["account_id"],
        {
            "APCA-API-KEY-ID": r.json()["key_id"],
            "APCA-API-SECRET-KEY": r.json()["secret_key"],
        },
    )
    r = await sim.put("/sim/faults", params={"account_id": sim_id}, json={"throttle_orders": True})
    assert r.status_code == 200, r.text
    r = await sim.post("/v2/orders", headers=keys, json=market("t1"))
    assert r.status_code == 429 and r.headers["retry-after"] == "60"
    assert (await sim.get("/v2/account", headers=keys)).status_code == 200
    assert (await sim.get("/v2/orders", headers=keys)).json() == []


KEYS = {"APCA-API-KEY-ID": "PKPARITY", "APCA-API-SECRET-KEY": "parity-secret"}


def _comparable(r: httpx.Response) -> tuple[int, str, str | None, object]:
    """An answer without what differs between any two runs (order ids, timestamps)."""
    body = r.json()
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k != "id" and not k.endswith("_at")}
    return r.status_code, r.headers["content-type"], r.headers.get("retry-after"), body


async def _answers(app: Any, faults: dict[str, Any]) -> list[tuple[int, str, str | None, object]]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
        r = await client.post(
            "/sim/accounts",
            json={
                "cash": "10000",
                "key_id": KEYS["APCA-API-KEY-ID"],
                "secret_key": KEYS["APCA-API-SECRET-KEY"],
            },
        )
        assert r.status_code == 201, r.text
        assert (await client.put("/sim/faults", json=faults)).status_code == 200
        answers = []
        for headers, body in (
            (KEYS, market("p1")),
            (KEYS, market("p1")),  # a duplicate client order id
            ({**KEYS, "APCA-API-SECRET-KEY": "wrong"}, market("p2")),
            (KEYS, {**market("p3"), "qty": "-1"}),
            (KEYS, {**market("p4"), "type": "limit", "limit_price": "1"}),  # rests
        ):
            r = await client.post("/v2/orders", headers=headers, json=body)
            answers.append(_comparable(r))
        r = await client.post(
            "/v2/orders", headers={**KEYS, "content-type": "application/json"}, content=b"{"
        )
        answers.append(_comparable(r))
    return answers


@pytest.mark.parametrize(
    "faults",
    [
        {},
        {"latency_ms": 1, "jitter_ms": 1},
        {"error_rate": 1},
        {"rate_limit_per_min": 2},
        {"partial_fill_ratio": 0.5},
        {"reject_orders": True},
        {"throttle_orders": True},
        {"dedup_client_order_id": False},
    ],
)
async def test_the_direct_order_path_answers_as_the_routed_one(faults: dict[str, Any]) -> None:
    """POST /v2/orders skips Starlette's routing (brokers.sim.app.Simulator); through either
    entry, under every fault, the same requests get the same answers: status, content type,
    Retry-After and the whole body (ids and timestamps aside)."""
    direct = await _answers(build_app(seed=7), faults)
    app = build_app(seed=7)
    routed = await _answers(app.routed, faults)
    assert direct == routed
    assert len({status for status, *_ in direct}) > 1  # not one answer for everything


async def test_only_order_placement_skips_the_routing(monkeypatch: pytest.MonkeyPatch) -> None:
    app = build_app(seed=7)
    routed = app.routed
    seen: list[tuple[str, str]] = []

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            seen.append((scope["method"], scope["path"]))
        await routed(scope, receive, send)

    monkeypatch.setattr(app, "routed", recording)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
        keys = await account(client)
        seen.clear()
        assert (await client.post("/v2/orders", headers=keys, json=market("a"))).status_code == 200
        assert seen == []
        await client.get("/v2/orders", headers=keys)
        await client.head("/v2/orders", headers=keys)
        await client.post("/v2/orders/", headers=keys, json=market("b"))
        await client.post("/v2/positions", headers=keys, json={})
    assert seen == [
        ("GET", "/v2/orders"),
        ("HEAD", "/v2/orders"),
        ("POST", "/v2/orders/"),
        ("POST", "/v2/positions"),
    ]


async def test_a_failure_on_the_direct_order_path_is_answered_as_the_routed_path_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug in the simulator is a plain 500 and an exception that reaches the server (and a
    test's ASGI transport), through either entry: never an answer that looks like a broker's."""

    def broken(*args: object) -> None:
        raise RuntimeError("engine bug")

    answers = []
    for entry in ("direct", "routed"):
        app = build_app(seed=7)
        monkeypatch.setattr(app.state.engine, "place", broken)
        target = app if entry == "direct" else app.routed
        quiet = httpx.ASGITransport(app=target, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=quiet, base_url="http://sim") as client:
            keys = await account(client)
            r = await client.post("/v2/orders", headers=keys, json=market("x1"))
            answers.append((r.status_code, r.headers["content-type"], r.text))
        loud = httpx.ASGITransport(app=target)
        async with httpx.AsyncClient(transport=loud, base_url="http://sim") as client:
            with pytest.raises(RuntimeError, match="engine bug"):
                await client.post("/v2/orders", headers=keys, json=market("x2"))
    assert answers[0] == answers[1]
    assert answers[0][0] == 500 and answers[0][2] == "Internal Server Error"
