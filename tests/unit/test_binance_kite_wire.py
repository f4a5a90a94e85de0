"""Binance and Kite adapters against the brokers' documented wire formats."""

import hashlib
import hmac
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from brokers.binance import translate as binance
from brokers.kite import translate as kite
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

RESOURCES = Path(__file__).resolve().parents[1] / "resources"
SPOT = json.loads((RESOURCES / "binance" / "spot_examples.json").read_text())


def kite_mock(name: str) -> Any:
    return json.loads((RESOURCES / "kite" / f"{name}.json").read_text())


# Binance ----------------------------------------------------------------------------------
def test_binance_signature_matches_the_documented_hmac() -> None:
    # The worked example from Binance's "SIGNED endpoint examples for POST /api/v3/order".
    secret = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
    params = {
        "symbol": "LTCBTC",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "1",
        "price": "0.1",
        "recvWindow": "5000",
        "timestamp": "1499827319559",
    }
    signed = binance.sign(params, secret)
    assert signed.endswith(
        "signature=c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
    )
    unsigned = signed.rsplit("&signature=", 1)[0]
    expected = hmac.new(secret.encode(), unsigned.encode(), hashlib.sha256).hexdigest()
    assert signed.endswith(expected)


def test_binance_order_params_are_documented() -> None:
    request = OrderRequest(
        "c1",
        "BTCUSDT",
        Side.SELL,
        Decimal("0.015"),
        OrderType.STOP_LIMIT,
        TimeInForce.DAY,
        limit_price=Decimal("61000"),
        stop_price=Decimal("61500"),
    )
    params = binance.order_params(request)
    assert set(params) <= set(SPOT["parameters"]["POST /api/v3/order"])
    assert params == {
        "symbol": "BTCUSDT",
        "side": "SELL",
        "type": "STOP_LOSS_LIMIT",
        "quantity": "0.015",
        "newClientOrderId": "c1",
        "newOrderRespType": "RESULT",
        "price": "61000",
        "timeInForce": "GTC",
        "stopPrice": "61500",
    }


def test_binance_parses_the_spec_examples() -> None:
    order = binance.parse_order(SPOT["orderResponseResult"])
    assert (order.status, order.broker_order_id, order.filled_qty) == (
        LegStatus.FILLED,
        "28",
        Decimal("10"),
    )
    assert order.filled_avg_price == Decimal(1)
    queried = binance.parse_order(SPOT["order"])
    assert queried.client_order_id == "6gCrw2kRUAF9CvJDGP16IP"


def test_binance_account_and_instrument() -> None:
    account = {
        "uid": 1,
        "balances": [
            {"asset": "USDT", "free": "1000.5", "locked": "0"},
            {"asset": "BTC", "free": "0.5", "locked": "0.1"},
        ],
    }
    snapshot = binance.parse_account(account, {"BTCUSDT": Decimal(60000)}, "USDT")
    assert snapshot.equity == Decimal("37000.5") and snapshot.cash == Decimal("1000.5")
    assert snapshot.day_pnl is None
    [position] = binance.parse_positions(account, "USDT")
    assert (position.symbol, position.qty) == ("BTCUSDT", Decimal("0.6"))
    info = {
        "symbols": [
            {
                "symbol": "BTCUSDT",
                "filters": [
                    {
                        "filterType": "LOT_SIZE",
                        "minQty": "0.00001000",
                        "maxQty": "9000",
                        "stepSize": "0.00001000",
                    },
                    {"filterType": "NOTIONAL", "minNotional": "5.00000000"},
                ],
            }
        ]
    }
    instrument = binance.parse_instrument(info, "BTCUSDT")
    assert (instrument.qty_step, instrument.min_qty, instrument.min_notional) == (
        Decimal("0.00001"),
        Decimal("0.00001"),
        Decimal(5),
    )


@pytest.mark.parametrize(
    "status,body,headers,lookup,expected,code",
    [
        (
            400,
            {"code": -2010, "msg": "Account has insufficient balance for requested action."},
            None,
            False,
            Rejected,
            "insufficient_funds",
        ),
        (
            400,
            {"code": -2010, "msg": "Duplicate order sent."},
            None,
            False,
            DuplicateClientOrderId,
            "duplicate_client_order_id",
        ),
        (429, {"code": -1003, "msg": "Too many requests."}, "30", False, Retryable, "rate_limited"),
        (
            418,
            {"code": -1003, "msg": "Way too many requests; IP banned until 1659146700000."},
            "120",
            False,
            Retryable,
            "ip_banned",
        ),
        (
            400,
            {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."},
            None,
            False,
            Retryable,
            "clock_skew",
        ),
        (
            401,
            {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."},
            None,
            False,
            Fatal,
            "unauthorized",
        ),
        (
            400,
            {"code": -1022, "msg": "Signature for this request is not valid."},
            None,
            False,
            Fatal,
            "unauthorized",
        ),
        (
            400,
            {"code": -1007, "msg": "Timeout waiting for response from backend server."},
            None,
            False,
            Unknown,
            "http_400",
        ),
        (503, "Service Unavailable", None, False, Unknown, "http_503"),
        (400, {"code": -2013, "msg": "Order does not exist."}, None, True, NotFound, "not_found"),
        (
            400,
            {"code": -2011, "msg": "Unknown order sent."},
            None,
            False,
            Rejected,
            "binance_-2011",
        ),
        (
            400,
            {"code": -1013, "msg": "Filter failure: LOT_SIZE"},
            None,
            False,
            Rejected,
            "binance_-1013",
        ),
    ],
)
def test_binance_errors(
    status: int, body: Any, headers: str | None, lookup: bool, expected: type[Exception], code: str
) -> None:
    error = binance.error_for(status, body, headers, lookup=lookup)
    assert type(error) is expected and error.code == code
    if isinstance(error, Retryable) and headers:
        assert error.retry_after == float(headers)


# Kite -------------------------------------------------------------------------------------
def test_kite_parses_the_official_mocks() -> None:
    orders = [kite.parse_order(o) for o in kite_mock("orders")["data"]]
    assert {o.status for o in orders} <= set(LegStatus)
    assert any(o.status is LegStatus.CANCELED for o in orders)
    history = kite_mock("order_info")["data"]
    current = kite.parse_order(history[-1])
    assert current.broker_order_id == "171229000724687"
    first = kite.parse_order(history[0])
    assert first.status is LegStatus.ACCEPTED and first.broker_status == "PUT ORDER REQ RECEIVED"
    positions = kite.parse_positions(kite_mock("positions")["data"])
    assert positions and all(p.qty != 0 for p in positions)
    margins = kite.parse_margins(kite_mock("margins_equity")["data"])
    assert margins.equity == Decimal("99725.05000000002")
    assert margins.day_pnl == Decimal("99725.05000000002") - Decimal("245431.6")
    ltp = kite_mock("ltp")["data"]["NSE:INFY"]["last_price"]
    assert Decimal(str(ltp)) == Decimal("1074.35")
    assert kite_mock("order_response")["data"]["order_id"] == "151220000000000"


def test_kite_partial_fill_and_rejection_reason() -> None:
    base = kite_mock("order_info")["data"][-1]
    partial = kite.parse_order(
        {**base, "status": "OPEN", "filled_quantity": 3, "average_price": 300.5}
    )
    assert partial.status is LegStatus.PARTIALLY_FILLED and partial.filled_qty == 3
    rejected = kite.parse_order(
        {**base, "status": "REJECTED", "status_message": "Insufficient funds"}
    )
    assert rejected.status is LegStatus.REJECTED and rejected.reason == "Insufficient funds"


def test_kite_order_form() -> None:
    request = OrderRequest(
        "Ab12Cd34Ef56Gh78Ij90",
        "INFY",
        Side.BUY,
        Decimal(5),
        OrderType.STOP,
        TimeInForce.DAY,
        stop_price=Decimal("1500.5"),
    )
    form = kite.order_form(request, "NSE", "CNC")
    assert form == {
        "tradingsymbol": "INFY",
        "exchange": "NSE",
        "transaction_type": "BUY",
        "order_type": "SL-M",
        "quantity": "5",
        "product": "CNC",
        "validity": "DAY",
        "tag": "Ab12Cd34Ef56Gh78Ij90",
        "trigger_price": "1500.5",
        "market_protection": "-1",  # required by Kite for SL-M orders sent through the API
    }


@pytest.mark.parametrize(
    "status,error_type,expected,code",
    [
        (403, "TokenException", Fatal, "unauthorized"),
        (403, "PermissionException", Fatal, "unauthorized"),
        (400, "InputException", Rejected, "inputexception"),
        (400, "OrderException", Rejected, "orderexception"),
        (400, "MarginException", Rejected, "insufficient_funds"),
        (429, "NetworkException", Retryable, "rate_limited"),
        (502, "NetworkException", Unknown, "http_502"),
        (503, "NetworkException", Unknown, "http_503"),
        (500, "GeneralException", Unknown, "http_500"),
    ],
)
def test_kite_errors(status: int, error_type: str, expected: type[Exception], code: str) -> None:
    body = {"status": "error", "message": "documented error", "error_type": error_type}
    error = kite.error_for(status, body, "2")
    assert type(error) is expected and error.code == code
