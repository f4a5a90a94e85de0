"""One contract every adapter passes: accept, reject, timeout → lookup → no duplicate,
5xx → unknown → lookup, 429 with Retry-After, partial fill, cancel of a filled order.

Alpaca, Binance and Kite run against fake venues speaking their documented wire formats;
"sim" runs the Alpaca adapter against the real simulator app (in process, over ASGI)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest

import brokers.sim.app as sim_app
from brokers.alpaca.client import AlpacaBroker
from brokers.binance.client import BinanceBroker
from brokers.kite.client import KiteBroker
from replication.errors import Rejected
from replication.ids import client_order_id
from replication.model import OrderRequest
from replication.ports import Broker
from replication.state import LegStatus
from schemas.common import OrderType, Side, TimeInForce
from services.app.sending import look_up, place_once
from tests.contract.venues import Venue, alpaca_handler, binance_handler, kite_handler


@dataclass
class Harness:
    name: str
    broker: Broker
    set_fault: Callable[[str], Any]  # async
    clear_fault: Callable[[], Any]  # async: the venue answers normally again
    count: Callable[[str], Any]  # async: orders with this client id at the venue
    symbol: str
    # Whether the venue stores the order before answering its injected 5xx. The fake venues
    # do (the worst case: placed, but the answer says error); the simulator's error fault
    # fires before its order handler, so nothing is stored there.
    stores_before_5xx: bool


async def _fake(name: str) -> tuple[Broker, Venue, httpx.AsyncClient]:
    venue = Venue()
    if name == "alpaca":
        handler = alpaca_handler(venue)
    elif name == "binance":
        handler = binance_handler(venue, "api-key", "api-secret")
    else:
        handler = kite_handler(venue, "api-key", "access-token")
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="https://venue")
    broker: Broker
    if name == "alpaca":
        broker = AlpacaBroker(http, "PK", "SK")
    elif name == "binance":
        broker = BinanceBroker(http, "api-key", "api-secret")
    else:
        broker = KiteBroker(http, "api-key", "access-token")
    return broker, venue, http


@pytest.fixture(params=["alpaca", "binance", "kite", "sim"])
async def harness(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Harness]:
    name = request.param
    if name != "sim":
        broker, venue, http = await _fake(name)

        async def set_fault(kind: str) -> None:
            venue.fault = kind

        async def count(cid: str) -> int:
            return venue.count(cid)

        async def clear_fault() -> None:
            venue.fault = None

        try:
            yield Harness(
                name,
                broker,
                set_fault,
                clear_fault,
                count,
                "BTCUSDT" if name == "binance" else "INFY",
                stores_before_5xx=True,
            )
        finally:
            await http.aclose()
        return
    monkeypatch.setattr(sim_app, "TIMEOUT_HOLD_S", 5.0)
    app = sim_app.build_app(seed=1)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim")
    keys = (await http.post("/sim/accounts", json={"cash": "100000"})).json()
    account_id = keys["account_id"]
    faults = {
        "reject": {"cash": None},
        "timeout_after_store": {"accept_then_timeout_rate": 1.0},
        "error_after_store": {"error_rate": 1.0},
        "rate_limit": {"rate_limit_per_min": 1},
        "partial": {"partial_fill_ratio": 0.5},
    }

    async def set_sim_fault(kind: str) -> None:
        if kind == "reject":
            app.state.engine.accounts[account_id].cash = Decimal(1)
            return
        await http.put("/sim/faults", params={"account_id": account_id}, json=faults[kind])
        if kind == "rate_limit":
            await http.get("/v2/account", headers=headers)  # spend the one request a minute

    async def clear_sim_fault() -> None:
        await http.put(
            "/sim/faults",
            params={"account_id": account_id},
            json={"error_rate": 0.0, "accept_then_timeout_rate": 0.0},
        )

    async def count_sim(cid: str) -> int:
        orders = (await http.get("/sim/orders", params={"account_id": account_id})).json()
        return sum(1 for o in orders if o["client_order_id"] == cid)

    headers = {"APCA-API-KEY-ID": keys["key_id"], "APCA-API-SECRET-KEY": keys["secret_key"]}
    try:
        yield Harness(
            "sim",
            AlpacaBroker(http, keys["key_id"], keys["secret_key"]),
            set_sim_fault,
            clear_sim_fault,
            count_sim,
            "AAPL",
            stores_before_5xx=False,
        )
    finally:
        await http.aclose()


def _request(h: Harness, n: int, qty: str = "10") -> OrderRequest:
    return OrderRequest(
        client_order_id(f"order-{n}", f"{h.name}-account", "open"),
        h.symbol,
        Side.BUY,
        Decimal(qty),
        OrderType.MARKET,
        TimeInForce.DAY,
    )


async def test_accept(harness: Harness) -> None:
    request = _request(harness, 1)
    outcome = await place_once(harness.broker, harness.name, "leg", request, 2.0, 0.1)
    assert outcome.status is LegStatus.FILLED and outcome.broker_order_id
    assert outcome.filled_qty == Decimal(10)
    assert await harness.count(request.client_order_id) == 1
    found = await look_up(
        harness.broker, harness.name, "leg", request.client_order_id, request.symbol, 2.0, 0.1
    )
    assert found is not None and found.broker_order_id == outcome.broker_order_id


async def test_reject(harness: Harness) -> None:
    await harness.set_fault("reject")
    request = _request(harness, 2)
    outcome = await place_once(harness.broker, harness.name, "leg", request, 2.0, 0.1)
    assert outcome.status is LegStatus.REJECTED
    assert outcome.reason is not None and outcome.reason.startswith("insufficient_funds")
    assert await harness.count(request.client_order_id) == 0


async def test_timeout_then_lookup_never_duplicates(harness: Harness) -> None:
    await harness.set_fault("timeout_after_store")
    request = _request(harness, 3)
    outcome = await place_once(harness.broker, harness.name, "leg", request, 0.5, 0.1)
    assert outcome.status is LegStatus.UNKNOWN  # sent, no answer: in doubt, not failed
    await harness.clear_fault()
    found = await look_up(
        harness.broker, harness.name, "leg", request.client_order_id, request.symbol, 2.0, 0.1
    )
    assert found is not None and found.status is LegStatus.FILLED  # so: no resend
    assert await harness.count(request.client_order_id) == 1


async def test_server_error_is_unknown_then_looked_up(harness: Harness) -> None:
    await harness.set_fault("error_after_store")
    request = _request(harness, 4)
    outcome = await place_once(harness.broker, harness.name, "leg", request, 2.0, 0.1)
    # A 5xx is in doubt: not rejected or failed (final), and not "retrying" (which means the
    # broker certainly did not place it). Only a lookup may decide what happened.
    assert outcome.status is LegStatus.UNKNOWN, outcome
    assert outcome.reason is not None and outcome.reason.startswith("in_doubt: http_5"), outcome
    assert outcome.recheck_after_s is not None
    await harness.clear_fault()
    stored = await harness.count(request.client_order_id)
    assert stored == (1 if harness.stores_before_5xx else 0)
    found = await look_up(
        harness.broker, harness.name, "leg", request.client_order_id, request.symbol, 2.0, 0.1
    )
    if harness.stores_before_5xx:
        # The venue has it: the lookup must find the very order, filled, so nothing is resent.
        assert found is not None, "the lookup missed an order the venue holds"
        assert found.status is LegStatus.FILLED and found.broker_order_id
        assert found.filled_qty == Decimal(10)
    else:
        # The venue never stored it: the lookup says so, and only then is it sent again.
        assert found is None, found
        again = await place_once(harness.broker, harness.name, "leg", request, 2.0, 0.1)
        assert again.status is LegStatus.FILLED, again
    assert await harness.count(request.client_order_id) == 1  # exactly once either way


async def test_rate_limit_carries_retry_after(harness: Harness) -> None:
    await harness.set_fault("rate_limit")
    request = _request(harness, 5)
    outcome = await place_once(harness.broker, harness.name, "leg", request, 2.0, 0.1)
    assert outcome.status is LegStatus.RETRYING  # not placed: never `unknown`
    assert outcome.reason == "retrying: rate_limited"
    assert outcome.recheck_after_s is not None and outcome.recheck_after_s >= 1
    if harness.name != "sim":
        assert outcome.recheck_after_s == 7
    assert await harness.count(request.client_order_id) == 0


async def test_partial_fill(harness: Harness) -> None:
    await harness.set_fault("partial")
    request = _request(harness, 6)
    outcome = await place_once(harness.broker, harness.name, "leg", request, 2.0, 0.1)
    assert outcome.status is LegStatus.PARTIALLY_FILLED
    assert outcome.filled_qty is not None and 0 < outcome.filled_qty < Decimal(10)


async def test_cancel_of_a_filled_order(harness: Harness) -> None:
    request = _request(harness, 7)
    outcome = await place_once(harness.broker, harness.name, "leg", request, 2.0, 0.1)
    assert outcome.status is LegStatus.FILLED and outcome.broker_order_id
    with pytest.raises(Rejected):
        await harness.broker.cancel_order(outcome.broker_order_id, request.symbol)
    found = await look_up(
        harness.broker, harness.name, "leg", request.client_order_id, request.symbol, 2.0, 0.1
    )
    assert found is not None and found.status is LegStatus.FILLED
