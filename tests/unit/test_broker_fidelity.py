"""Issue 17: what the brokers' official SDKs showed our adapters and simulator got wrong.

Each test here failed before its fix: Kite's market protection and GTC, Binance's request
weights and unknown symbols, and the simulator's replace atomicity, IOC/FOK, list filters,
bracket refusal, fractional rules and JSON 404/405.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from brokers.alpaca import translate as alpaca_translate
from brokers.binance import constants as binance_constants
from brokers.binance import translate as binance
from brokers.binance.client import BinanceBroker
from brokers.kite import translate as kite
from brokers.kite.client import KiteBroker
from brokers.sim.app import build_app
from replication.errors import Rejected
from replication.model import OrderRequest
from schemas.common import OrderType, Side, TimeInForce


def request(kind: OrderType, tif: TimeInForce = TimeInForce.DAY, qty: str = "5") -> OrderRequest:
    return OrderRequest(
        "Ab12Cd34Ef56Gh78Ij90",
        "INFY",
        Side.BUY,
        Decimal(qty),
        kind,
        tif,
        limit_price=Decimal("1500") if kind in (OrderType.LIMIT, OrderType.STOP_LIMIT) else None,
        stop_price=Decimal("1490") if kind in (OrderType.STOP, OrderType.STOP_LIMIT) else None,
    )


# Kite ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kind,protected",
    [
        (OrderType.MARKET, True),
        (OrderType.STOP, True),  # SL-M
        (OrderType.LIMIT, False),
        (OrderType.STOP_LIMIT, False),  # SL
    ],
)
def test_kite_market_and_sl_m_orders_carry_market_protection(
    kind: OrderType, protected: bool
) -> None:
    form = kite.order_form(request(kind), "NSE", "CNC")
    assert form.get("market_protection") == ("-1" if protected else None)


def test_kite_refuses_gtc_instead_of_sending_day() -> None:
    with pytest.raises(Rejected) as refused:
        kite.order_form(request(OrderType.LIMIT, TimeInForce.GTC), "NSE", "CNC")
    assert refused.value.code == "time_in_force_unsupported"
    assert "GTC" in refused.value.reason
    assert (
        kite.order_form(request(OrderType.LIMIT, TimeInForce.IOC), "NSE", "CNC")["validity"]
        == "IOC"
    )


async def test_kite_adapter_sends_nothing_for_a_gtc_order() -> None:
    sent: list[httpx.Request] = []

    def venue(req: httpx.Request) -> httpx.Response:
        sent.append(req)
        return httpx.Response(200, json={"status": "success", "data": {"order_id": "1"}})

    async with httpx.AsyncClient(
        transport=httpx.MockTransport(venue), base_url="http://kite"
    ) as http:
        broker = KiteBroker(http, "key", "token")
        with pytest.raises(Rejected):
            await broker.place_order(request(OrderType.LIMIT, TimeInForce.GTC))
    assert sent == []


# Every broker: a time in force is sent as itself, refused with a reason, or mapped with one.
def _tif_outcome(broker: str, kind: OrderType, tif: TimeInForce) -> str | None:
    """The value sent for `tif`, or None when the order is refused (with a reason)."""
    try:
        if broker == "kite":
            return kite.order_form(request(kind, tif), "NSE", "CNC")["validity"]
        if broker == "binance":
            # MARKET executes at once (every time in force means the same); a STOP_LOSS
            # takes no timeInForce and rests until triggered, i.e. good till canceled.
            implied = "GTC" if kind is OrderType.STOP else tif.value
            return binance.order_params(request(kind, tif)).get("timeInForce", implied)
        return str(alpaca_translate.order_request_body(request(kind, tif))["time_in_force"])
    except Rejected as exc:
        assert exc.code == "time_in_force_unsupported" and exc.reason
        return None


@pytest.mark.parametrize("broker", ["alpaca", "binance", "kite"])
@pytest.mark.parametrize("kind", list(OrderType))
@pytest.mark.parametrize("tif", list(TimeInForce))
def test_no_time_in_force_is_changed_silently(
    broker: str, kind: OrderType, tif: TimeInForce
) -> None:
    sent = _tif_outcome(broker, kind, tif)
    if sent is None or sent.lower() == tif.value:
        return
    reasons = {"binance": binance_constants.TIME_IN_FORCE_MAPPING_REASONS}.get(broker, {})
    assert tif.value in reasons, f"{broker} sends {tif.value} as {sent} without a reason"


def test_binance_refuses_an_ioc_stop_which_would_rest() -> None:
    with pytest.raises(Rejected) as refused:
        binance.order_params(request(OrderType.STOP, TimeInForce.IOC))
    assert refused.value.code == "time_in_force_unsupported"
    params = binance.order_params(request(OrderType.STOP_LIMIT, TimeInForce.IOC))
    assert params["timeInForce"] == "IOC"


# Binance ------------------------------------------------------------------------------------
async def test_binance_instrument_for_a_symbol_exchange_info_lacks_is_a_domain_error() -> None:
    def venue(req: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"timezone": "UTC", "symbols": []})

    async with httpx.AsyncClient(
        transport=httpx.MockTransport(venue), base_url="http://binance"
    ) as http:
        broker = BinanceBroker(http, "key", "secret")
        with pytest.raises(Rejected) as refused:
            await broker.instrument("NOPEUSDT")
    assert refused.value.code == "unknown_symbol"


def test_binance_weights_follow_the_arguments_and_the_watched_symbols() -> None:
    weights = binance_constants.REQUEST_WEIGHTS
    assert weights[("GET", "/api/v3/ticker/price", False)] == 4  # every symbol
    assert weights[("GET", "/api/v3/ticker/price", True)] == 2
    broker = BinanceBroker(
        httpx.AsyncClient(), "k", "s", watch_symbols=("BTCUSDT", "ETHUSDT", "BNBUSDT")
    )
    assert broker.request_weight("list_orders") == 3 * 20
    assert broker.request_weight("account") == 20 + 4
    assert broker.request_weight("last_price") == 2
    assert broker.request_weight("replace_order") == 4 + 1
    assert BinanceBroker(httpx.AsyncClient(), "k", "s").request_weight("list_orders") == 0


# Simulator ----------------------------------------------------------------------------------
@pytest.fixture
async def sim() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(seed=7))
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
        yield client


async def keys_for(sim: httpx.AsyncClient, cash: str = "10000") -> dict[str, str]:
    body = (await sim.post("/sim/accounts", json={"cash": cash})).json()
    return {"APCA-API-KEY-ID": body["key_id"], "APCA-API-SECRET-KEY": body["secret_key"]}


def limit_order(cid: str, price: str, tif: str = "gtc", qty: str = "1") -> dict[str, Any]:
    return {
        "symbol": "MSFT",
        "qty": qty,
        "side": "buy",
        "type": "limit",
        "limit_price": price,
        "time_in_force": tif,
        "client_order_id": cid,
    }


@pytest.mark.parametrize(
    "change,status",
    [
        ({"client_order_id": "taken"}, 422),  # duplicate client order id
        ({"qty": "1000"}, 403),  # 1000 x 50 > 10,000 of buying power
    ],
)
async def test_a_refused_replace_leaves_the_original_working(
    sim: httpx.AsyncClient, change: dict[str, str], status: int
) -> None:
    keys = await keys_for(sim)
    await sim.put("/sim/prices", json={"MSFT": "100"})
    await sim.post("/v2/orders", headers=keys, json=limit_order("taken", "40"))
    order = (await sim.post("/v2/orders", headers=keys, json=limit_order("mine", "50"))).json()
    refused = await sim.patch(f"/v2/orders/{order['id']}", headers=keys, json=change)
    assert refused.status_code == status and set(refused.json()) == {"code", "message"}
    after = (await sim.get(f"/v2/orders/{order['id']}", headers=keys)).json()
    assert after["status"] == "new" and after["replaced_by"] is None
    assert after["replaced_at"] is None
    # Still working: it fills when the price crosses, and it can be replaced for real.
    await sim.put("/sim/prices", json={"MSFT": "49"})
    assert (await sim.get(f"/v2/orders/{order['id']}", headers=keys)).json()["status"] == "filled"


@pytest.mark.parametrize("tif", ["ioc", "fok"])
async def test_ioc_and_fok_limit_orders_never_rest(sim: httpx.AsyncClient, tif: str) -> None:
    keys = await keys_for(sim)
    await sim.put("/sim/prices", json={"MSFT": "100"})
    order = (await sim.post("/v2/orders", headers=keys, json=limit_order("i1", "90", tif))).json()
    assert order["status"] == "canceled" and order["filled_qty"] == "0"
    assert order["canceled_at"] is not None
    await sim.put("/sim/prices", json={"MSFT": "80"})  # would have crossed a resting order
    later = (await sim.get(f"/v2/orders/{order['id']}", headers=keys)).json()
    assert later["status"] == "canceled" and later["filled_qty"] == "0"
    marketable = (
        await sim.post("/v2/orders", headers=keys, json=limit_order("i2", "90", tif))
    ).json()
    assert marketable["status"] == "filled"


async def test_ioc_fills_what_it_can_and_fok_fills_all_or_nothing(sim: httpx.AsyncClient) -> None:
    keys = await keys_for(sim, cash="100000")
    await sim.put("/sim/prices", json={"MSFT": "100"})
    await sim.put("/sim/faults", json={"partial_fill_ratio": 0.5})
    ioc = (
        await sim.post("/v2/orders", headers=keys, json=limit_order("p1", "100", "ioc", "10"))
    ).json()
    assert ioc["status"] == "canceled" and ioc["filled_qty"] == "5"
    fok = (
        await sim.post("/v2/orders", headers=keys, json=limit_order("p2", "100", "fok", "10"))
    ).json()
    assert fok["status"] == "canceled" and fok["filled_qty"] == "0"


async def test_order_list_filters_until_symbols_and_side(sim: httpx.AsyncClient) -> None:
    keys = await keys_for(sim, cash="100000")
    await sim.put("/sim/prices", json={"MSFT": "100", "AAPL": "100"})
    first = (await sim.post("/v2/orders", headers=keys, json=limit_order("f1", "10"))).json()
    second = (
        await sim.post(
            "/v2/orders", headers=keys, json={**limit_order("f2", "10"), "symbol": "AAPL"}
        )
    ).json()
    await sim.put("/sim/prices", json={"AAPL": "200"})  # no sell fills below 200
    third = (
        await sim.post(
            "/v2/orders",
            headers=keys,
            json={**limit_order("f3", "300"), "symbol": "AAPL", "side": "sell"},
        )
    ).json()

    async def ids(**params: str) -> list[str]:
        r = await sim.get("/v2/orders", headers=keys, params={"status": "all", **params})
        assert r.status_code == 200, r.text
        return [o["id"] for o in r.json()]

    assert await ids(until=second["submitted_at"]) == [first["id"]]
    assert await ids(symbols="AAPL") == [third["id"], second["id"]]
    assert await ids(symbols="AAPL,MSFT", direction="asc") == [
        first["id"],
        second["id"],
        third["id"],
    ]
    assert await ids(side="sell") == [third["id"]]
    assert await ids(side="buy", symbols="AAPL") == [second["id"]]
    bad = await sim.get("/v2/orders", headers=keys, params={"side": "short"})
    assert bad.status_code == 422 and set(bad.json()) == {"code", "message"}


@pytest.mark.parametrize(
    "extra",
    [
        {
            "order_class": "bracket",
            "take_profit": {"limit_price": "200"},
            "stop_loss": {"stop_price": "50"},
        },
        {"order_class": "oco", "take_profit": {"limit_price": "200"}},
        {"order_class": "oto", "stop_loss": {"stop_price": "50"}},
        {"take_profit": {"limit_price": "200"}},
    ],
)
async def test_bracket_oco_oto_orders_are_refused(
    sim: httpx.AsyncClient, extra: dict[str, Any]
) -> None:
    keys = await keys_for(sim)
    r = await sim.post("/v2/orders", headers=keys, json={**limit_order("b1", "10"), **extra})
    assert r.status_code == 422 and "not supported" in r.json()["message"]
    listed = (await sim.get("/v2/orders", headers=keys, params={"status": "all"})).json()
    assert listed == []
    simple = {**limit_order("b2", "10"), "order_class": "simple"}
    assert (await sim.post("/v2/orders", headers=keys, json=simple)).status_code == 200


@pytest.mark.parametrize("tif,accepted", [("day", True), ("gtc", False), ("ioc", False)])
async def test_fractional_orders_are_day_orders_only(
    sim: httpx.AsyncClient, tif: str, accepted: bool
) -> None:
    keys = await keys_for(sim)
    await sim.put("/sim/assets", json={"MSFT": {"fractionable": True}})
    r = await sim.post("/v2/orders", headers=keys, json=limit_order("x", "10", tif, qty="0.5"))
    if accepted:
        assert r.status_code == 200 and r.json()["qty"] == "0.5"
    else:
        assert r.status_code == 422
        assert r.json() == {"code": 42210000, "message": "fractional orders must be DAY orders"}


@pytest.mark.parametrize("tif", ["opg", "cls"])
async def test_auction_time_in_force_is_refused_not_ignored(
    sim: httpx.AsyncClient, tif: str
) -> None:
    keys = await keys_for(sim)
    r = await sim.post("/v2/orders", headers=keys, json=limit_order("a", "10", tif))
    assert r.status_code == 422 and tif in r.json()["message"]


async def test_unserved_routes_answer_alpaca_json(sim: httpx.AsyncClient) -> None:
    keys = await keys_for(sim)
    missing = await sim.get("/v2/watchlists", headers=keys)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/json"
    assert missing.json() == {"code": 40410000, "message": "endpoint not found"}
    wrong = await sim.put("/v2/orders", headers=keys)
    assert wrong.status_code == 405 and wrong.headers["content-type"] == "application/json"
    assert wrong.json() == {"code": 40510000, "message": "method not allowed"}
    assert "POST" in wrong.headers["allow"]
