"""alpaca-py and our Alpaca adapter send the same logical requests to one recording server
(issue 17): method, path, query parameters, JSON field names and values, and the auth headers
agree, except for the documented differences in ALLOWED.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, QueryOrderStatus
from alpaca.trading.enums import TimeInForce as SdkTimeInForce
from alpaca.trading.requests import (
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    ReplaceOrderRequest,
    StopLimitOrderRequest,
    StopOrderRequest,
)

from brokers.alpaca.client import AlpacaBroker
from replication.model import OrderRequest
from schemas.common import OrderType, Side, TimeInForce
from tests.contract.servers import (
    ADAPTER_CLIENTS,
    Recorded,
    RecordingServer,
    adapter_http,
    recording_server,
)

EXAMPLE = json.loads(
    (
        Path(__file__).resolve().parents[1] / "resources" / "alpaca" / "order_examples.json"
    ).read_text()
)["EquityOrderResponse"]
KEY, SECRET = "PKRECORDED", "secret"
CID = "Ab12Cd34Ef56Gh78Ij90"
ORDER_ID = EXAMPLE["id"]

ALLOWED_HEADERS = {
    "user-agent": "each client names itself",
    "content-length": "follows the body (numbers vs strings, see NUMBERS)",
    "accept-encoding": "transport detail of httpx vs requests",
    "connection": "transport detail",
}
ALLOWED = {
    "numbers": "alpaca-py sends qty and prices as JSON numbers (its models use floats); ours "
    "sends decimal strings, which Alpaca accepts and which keep Decimal precision; values are "
    "compared as decimals",
    "after": "alpaca-py and ours both send RFC 3339; compared as instants",
}


def respond(request: Recorded) -> tuple[int, Any]:
    if request.path.startswith("/v2/orders") and request.method == "DELETE":
        return 204, None
    if request.path == "/v2/orders" and request.method == "GET":
        return 200, [EXAMPLE]
    if request.path.startswith("/v2/orders"):
        return 200, EXAMPLE
    return 404, {"code": 40410000, "message": "endpoint not found"}


def normalized(request: Recorded) -> dict[str, Any]:
    body = json.loads(request.body) if request.body else None
    if isinstance(body, dict):  # ALLOWED["numbers"]
        body = {
            k: str(Decimal(str(v)).normalize())
            if isinstance(v, int | float) or k.endswith(("qty", "_price"))
            else v
            for k, v in body.items()
        }
    query = dict(request.query_params)
    if "after" in query:  # ALLOWED["after"]
        query["after"] = datetime.fromisoformat(query["after"].replace("Z", "+00:00")).isoformat()
    return {
        "method": request.method,
        "path": request.path,
        "query": query,
        "body": body,
        "headers": {k: v for k, v in request.headers.items() if k not in ALLOWED_HEADERS},
    }


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    with recording_server(respond) as recorder:
        yield recorder


@pytest.fixture
def sdk(server: RecordingServer) -> TradingClient:
    client = TradingClient(KEY, SECRET, paper=True, url_override=server.url)
    client._session.trust_env = False  # loopback only
    return client


@pytest.fixture(params=ADAPTER_CLIENTS)
async def adapter(server: RecordingServer, request: pytest.FixtureRequest) -> Any:
    async with adapter_http(request.param, server.url) as http:
        yield AlpacaBroker(http, KEY, SECRET)


def ours_for(kind: OrderType, tif: TimeInForce) -> OrderRequest:
    return OrderRequest(
        CID,
        "AAPL",
        Side.BUY,
        Decimal("2"),
        kind,
        tif,
        limit_price=Decimal("150.25") if kind in (OrderType.LIMIT, OrderType.STOP_LIMIT) else None,
        stop_price=Decimal("149.5") if kind in (OrderType.STOP, OrderType.STOP_LIMIT) else None,
    )


def sdk_for(kind: OrderType, tif: TimeInForce) -> Any:
    common = {
        "symbol": "AAPL",
        "qty": 2,
        "side": OrderSide.BUY,
        "time_in_force": SdkTimeInForce(tif.value),
        "client_order_id": CID,
    }
    if kind is OrderType.MARKET:
        return MarketOrderRequest(**common)
    if kind is OrderType.LIMIT:
        return LimitOrderRequest(**common, limit_price=150.25)
    if kind is OrderType.STOP:
        return StopOrderRequest(**common, stop_price=149.5)
    return StopLimitOrderRequest(**common, limit_price=150.25, stop_price=149.5)


@pytest.mark.parametrize("kind", list(OrderType), ids=lambda k: k.value)
@pytest.mark.parametrize("tif", list(TimeInForce), ids=lambda t: t.value)
async def test_orders_match_alpaca_py(
    server: RecordingServer,
    sdk: TradingClient,
    adapter: AlpacaBroker,
    kind: OrderType,
    tif: TimeInForce,
) -> None:
    await adapter.place_order(ours_for(kind, tif))
    ours = server.take()
    sdk.submit_order(sdk_for(kind, tif))
    assert [normalized(r) for r in ours] == [normalized(r) for r in server.take()]


async def test_other_calls_match_alpaca_py(
    server: RecordingServer, sdk: TradingClient, adapter: AlpacaBroker
) -> None:
    since = datetime(2026, 11, 1, 12, 30, tzinfo=UTC)
    await adapter.get_order_by_client_id(CID)
    await adapter.replace_order(ORDER_ID, CID, Decimal("3"), Decimal("151"), None)
    await adapter.cancel_order(ORDER_ID)
    await adapter.list_orders(since)
    ours = server.take()
    sdk.get_order_by_client_id(CID)
    sdk.replace_order_by_id(
        ORDER_ID, ReplaceOrderRequest(qty=3, limit_price=151, client_order_id=CID)
    )
    sdk.cancel_order_by_id(ORDER_ID)
    sdk.get_orders(
        GetOrdersRequest(status=QueryOrderStatus.ALL, limit=500, direction="asc", after=since)
    )
    assert [normalized(r) for r in ours] == [normalized(r) for r in server.take()]


def test_every_allowed_difference_is_documented() -> None:
    assert all({**ALLOWED_HEADERS, **ALLOWED}.values())
    assert not {"apca-api-key-id", "apca-api-secret-key"} & set(ALLOWED_HEADERS)
