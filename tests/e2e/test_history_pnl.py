"""P&L and history on the real stack: a follower's P&L after a round trip equals what the
simulator's fills say; cursor pages walk every row exactly once; CSV exports parse; the typed
client (clients/copytrade_client.py) drives it all."""

from __future__ import annotations

import csv
import io
import os
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from clients.copytrade_client import CopytradeClient, CopytradeError
from tests.helpers import Api, Stack

pytestmark = pytest.mark.e2e


@pytest.fixture
async def symbol(api: Api) -> str:
    name = "P" + os.urandom(3).hex().upper()
    assert (await api.sim.put("/sim/prices", json={name: "100"})).status_code == 200
    return name


async def _trade(api: Api, token: str, account: str, symbol: str, side: str, qty: str) -> str:
    response = await api.order(token, account, symbol=symbol, side=side, qty=qty)
    assert response.status_code == 202, response.text
    order_id: str = response.json()["order_id"]
    await api.settled(token, order_id)
    return order_id


def _sim_cash_and_position(orders: list[dict[str, Any]]) -> tuple[Decimal, Decimal]:
    """From the simulator's own fills: cash (-Σ signed qty * price) and the position."""
    cash, position = Decimal(0), Decimal(0)
    for o in orders:
        filled = Decimal(o["filled_qty"])
        if filled == 0:
            continue
        signed = filled if o["side"] == "buy" else -filled
        cash -= signed * Decimal(o["filled_avg_price"])
        position += signed
    return cash, position


async def test_follower_pnl_after_a_round_trip_matches_the_simulators_fills(
    api: Api, symbol: str
) -> None:
    master_id, master = await api.user("master")
    master_account, _ = await api.sim_account(master)
    follower = await api.follower(master_id, {"mode": "fixed", "qty": "5"})
    await _trade(api, master, master_account, symbol, "buy", "10")
    await api.sim.put("/sim/prices", json={symbol: "110"})
    await _trade(api, master, master_account, symbol, "sell", "10")
    await api.sim.put("/sim/prices", json={symbol: "104"})
    await _trade(api, master, master_account, symbol, "buy", "2")  # 5 open again
    await api.sim.put("/sim/prices", json={symbol: "120"})  # the mark

    fills = [
        o
        for o in await api.sim_orders()
        if o["account_id"] == follower["sim_account_id"] and o["symbol"] == symbol
    ]
    assert len(fills) == 3
    cash, position = _sim_cash_and_position(fills)
    async with CopytradeClient(api.http.base_url.__str__(), follower["token"]) as client:
        report = await client.pnl()
        only_master = await client.pnl(master_id=master_id)
    assert report == only_master
    [line] = [p for p in report["positions"] if p["symbol"] == symbol]
    assert line["master_id"] == master_id and line["subscription_id"]
    assert Decimal(line["position"]) == position == 5
    assert Decimal(line["mark_price"] or "0") == 120
    assert line["fees"] is None  # the simulator reports no fees
    assert line["fills"] == 3
    # realized + unrealized is the cash difference at the mark (average cost, exact)
    total = Decimal(line["realized"]) + Decimal(line["unrealized"] or "nan")
    assert total == cash + position * 120
    first_buy, sell = sorted(fills, key=lambda o: o["created_at"])[:2]
    realized = 5 * (Decimal(sell["filled_avg_price"]) - Decimal(first_buy["filled_avg_price"]))
    assert Decimal(line["realized"]) == realized

    async with CopytradeClient(str(api.http.base_url), master) as client:
        aggregate = await client.pnl()
    [mine] = [p for p in aggregate["positions"] if p["symbol"] == symbol]
    assert aggregate["role"] == "master"
    assert mine["followers"] == 1 and mine["subscription_id"] is None and mine["master_id"] is None
    assert Decimal(mine["realized"]) == realized and Decimal(mine["position"]) == 5


async def test_pnl_window_realizes_only_what_the_window_holds(api: Api, symbol: str) -> None:
    master_id, master = await api.user("master")
    master_account, _ = await api.sim_account(master)
    follower = await api.follower(master_id, {"mode": "fixed", "qty": "1"})
    await _trade(api, master, master_account, symbol, "buy", "1")
    copies = (await api.http.get("/v1/copies", headers=api.auth(follower["token"]))).json()
    after_buy = datetime.fromisoformat(copies[0]["created_at"])
    await api.sim.put("/sim/prices", json={symbol: "90"})
    await _trade(api, master, master_account, symbol, "sell", "1")
    headers = api.auth(follower["token"])
    before = (
        await api.http.get("/v1/pnl", headers=headers, params={"until": after_buy.isoformat()})
    ).json()
    assert before["positions"] == []  # `until` is exclusive: not even the buy
    window = (
        await api.http.get("/v1/pnl", headers=headers, params={"since": after_buy.isoformat()})
    ).json()
    [line] = window["positions"]
    assert line["fills"] == 2 and Decimal(line["position"]) == 0
    bad = await api.http.get(
        "/v1/pnl", headers=api.auth(master), params={"master_id": follower["user_id"]}
    )
    assert bad.status_code == 403


async def test_pagination_walks_every_row_exactly_once_and_csv_parses(
    api: Api, stack: Stack, symbol: str
) -> None:
    master_id, master = await api.user("master")
    master_account, _ = await api.sim_account(master)
    follower = await api.follower(master_id, {"mode": "fixed", "qty": "1"})
    orders = [await _trade(api, master, master_account, symbol, "buy", "1") for _ in range(7)]
    base = str(api.http.base_url)

    async with CopytradeClient(base, follower["token"]) as client:
        walked = [c async for c in client.iter_copies(limit=3)]
        assert [c["order_id"] for c in walked] == orders[::-1]  # newest first, each once
        # Old clients: a plain list, the next page in Link / X-Next-Cursor.
        first = await api.http.get(
            "/v1/copies", headers=api.auth(follower["token"]), params={"limit": 4}
        )
        assert isinstance(first.json(), list) and len(first.json()) == 4
        assert 'rel="next"' in first.headers["link"]
        rest = await api.http.get(
            "/v1/copies",
            headers=api.auth(follower["token"]),
            params={"limit": 4, "cursor": first.headers["x-next-cursor"]},
        )
        assert [c["leg_id"] for c in first.json() + rest.json()["items"]] == [
            c["leg_id"] for c in walked
        ]
        assert rest.json()["next_cursor"] is None
        # since/until: the middle three
        middle = walked[2:5]
        since = datetime.fromisoformat(middle[-1]["created_at"])
        until = datetime.fromisoformat(walked[1]["created_at"])
        ranged = [c async for c in client.iter_copies(limit=2, since=since, until=until)]
        assert [c["leg_id"] for c in ranged] == [c["leg_id"] for c in middle]
        exported = list(csv.DictReader(io.StringIO(await client.export_copies_csv())))
        assert [row["leg_id"] for row in exported] == [c["leg_id"] for c in walked]
        assert exported[0]["symbol"] == symbol and exported[0]["filled_qty"] == "1"
        with pytest.raises(CopytradeError) as refused:
            await client.copies_page(cursor="not-a-cursor")
        assert refused.value.status == 422 and refused.value.code == "invalid_cursor"

    async with CopytradeClient(base, master) as client:
        listed = [o async for o in client.iter_orders(limit=2)]
        assert [o["order_id"] for o in listed] == orders[::-1]
        assert all(o["legs"]["total"] == 1 for o in listed)  # the follower's copy
    response = await api.http.get("/v1/orders", headers={**api.auth(master), "accept": "text/csv"})
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [row["order_id"] for row in rows] == orders[::-1]
    plain = await api.http.get("/v1/orders", headers=api.auth(master))
    assert isinstance(plain.json(), list)  # old clients: unchanged
