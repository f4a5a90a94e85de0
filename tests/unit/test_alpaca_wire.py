"""The Alpaca adapter against Alpaca's documented wire format (examples from the official spec)."""

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from brokers.alpaca import translate
from brokers.alpaca.client import AlpacaBroker
from brokers.alpaca.constants import STATUS_MAP
from replication.errors import (
    DuplicateClientOrderId,
    Fatal,
    NotFound,
    Rejected,
    Retryable,
    Unknown,
)
from replication.model import OrderRequest
from replication.state import LegStatus
from schemas.common import OrderType, Side, TimeInForce

RESOURCES = Path(__file__).resolve().parents[1] / "resources" / "alpaca"
EXAMPLES = json.loads((RESOURCES / "order_examples.json").read_text())
SCHEMA = json.loads((RESOURCES / "schema_fields.json").read_text())


def test_parses_the_spec_examples() -> None:
    equity = translate.parse_order(EXAMPLES["EquityOrderResponse"])
    assert equity.broker_order_id == "7b08df51-c1ac-453c-99f9-323a5f075f0d"
    assert equity.status is LegStatus.ACCEPTED and equity.broker_status == "accepted"
    assert equity.filled_qty == Decimal("0") and equity.filled_avg_price is None
    crypto = translate.parse_order(EXAMPLES["CryptoOrderResponse"])
    assert crypto.status in set(LegStatus)


def test_every_documented_status_is_mapped() -> None:
    documented = {
        "new",
        "partially_filled",
        "filled",
        "done_for_day",
        "canceled",
        "expired",
        "replaced",
        "pending_cancel",
        "pending_replace",
        "accepted",
        "pending_new",
        "accepted_for_bidding",
        "stopped",
        "rejected",
        "suspended",
        "calculated",
        "held",
    }
    assert documented <= set(STATUS_MAP)
    with pytest.raises(Unknown):
        translate.parse_order({**EXAMPLES["EquityOrderResponse"], "status": "martian"})


def test_request_body_uses_spec_field_names() -> None:
    body = translate.order_request_body(
        OrderRequest(
            client_order_id="abc",
            symbol="AAPL",
            side=Side.BUY,
            qty=Decimal("2.50"),
            type=OrderType.LIMIT,
            time_in_force=TimeInForce.GTC,
            limit_price=Decimal("150.00"),
        )
    )
    assert body == {
        "symbol": "AAPL",
        "qty": "2.5",
        "side": "buy",
        "type": "limit",
        "time_in_force": "gtc",
        "client_order_id": "abc",
        "limit_price": "150",
    }
    assert set(body) <= set(SCHEMA["Order"]["properties"])


@pytest.mark.parametrize(
    "status,body,headers,expected",
    [
        (
            429,
            {"code": 42910000, "message": "rate limit exceeded"},
            {"Retry-After": "7"},
            Retryable,
        ),
        (401, {"code": 40110000, "message": "request is not authorized"}, {}, Fatal),
        (403, {"message": "forbidden."}, {}, Fatal),
        (403, {"code": 40310000, "message": "insufficient buying power"}, {}, Rejected),
        (
            422,
            {"code": 40010001, "message": "client_order_id must be unique"},
            {},
            DuplicateClientOrderId,
        ),
        (422, {"code": 40010001, "message": "qty must be > 0"}, {}, Rejected),
        (500, {"message": "internal server error"}, {}, Unknown),
        (503, "upstream unavailable", {}, Unknown),
    ],
)
async def test_errors_map_onto_the_taxonomy(
    status: int, body: Any, headers: dict[str, str], expected: type[Exception]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["APCA-API-KEY-ID"] == "PK"
        assert request.headers["APCA-API-SECRET-KEY"] == "SK"
        return httpx.Response(status, json=body, headers=headers)

    async with httpx.AsyncClient(
        transport=httpx.MockTransport(handler), base_url="https://paper-api.alpaca.markets"
    ) as http:
        broker = AlpacaBroker(http, "PK", "SK")
        with pytest.raises(expected) as info:
            await broker.place_order(
                OrderRequest("c1", "AAPL", Side.BUY, Decimal(1), OrderType.MARKET, TimeInForce.DAY)
            )
    if expected is Retryable:
        assert isinstance(info.value, Retryable) and info.value.retry_after == 7.0


async def test_lookup_404_is_not_found_and_transport_errors_are_unknown() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/orders:by_client_order_id":
            assert request.url.params["client_order_id"] == "c1"
            return httpx.Response(404, json={"code": 40410000, "message": "order not found"})
        raise httpx.ReadTimeout("timed out", request=request)

    async with httpx.AsyncClient(
        transport=httpx.MockTransport(handler), base_url="https://paper-api.alpaca.markets"
    ) as http:
        broker = AlpacaBroker(http, "PK", "SK")
        with pytest.raises(NotFound):
            await broker.get_order_by_client_id("c1")
        with pytest.raises(Unknown):
            await broker.place_order(
                OrderRequest("c1", "AAPL", Side.BUY, Decimal(1), OrderType.MARKET, TimeInForce.DAY)
            )
