"""binance-connector and python-binance, Binance's official and best-known Python clients, and
our Binance adapter send the same logical requests to one recording server (issue 17).

The requests must agree in method, path, parameter names and encoded values, and headers,
except for the documented differences below; every signature (ours and theirs) must verify
the way Binance verifies it (HMAC-SHA256 over the query string followed by the body). The
weights our adapter reports for each operation must be the weights of what it really sent,
and the shared budget must be charged exactly that.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from binance.client import Client as PythonBinance
from binance.spot import Spot as Connector

from brokers.binance import constants as c
from brokers.binance.client import BinanceBroker
from brokers.binance.descriptor import DESCRIPTOR
from replication.model import OrderRequest
from schemas.common import OrderType, Side, TimeInForce
from services.infra.ratelimit import BudgetedBroker, CircuitBreaker, RateBudget
from tests.contract.servers import (
    ADAPTER_CLIENTS,
    Recorded,
    RecordingServer,
    adapter_http,
    recording_server,
)

SPOT = json.loads(
    (
        Path(__file__).resolve().parents[1] / "resources" / "binance" / "spot_examples.json"
    ).read_text()
)
API_KEY, SECRET = "binancekey", "binancesecret"
CID = "Ab12Cd34Ef56Gh78Ij90"
START = datetime(2026, 11, 1, tzinfo=UTC)
START_MS = str(int(START.timestamp() * 1000))
WATCHED = ("BTCUSDT", "ETHUSDT")

# Documented differences (anything else fails the comparison).
VARYING_VALUES = {
    "timestamp": "each client reads its own clock",
    "signature": "signs its own timestamp; every signature is verified instead of compared",
}
ALLOWED_HEADERS = {
    "user-agent": "each client names itself",
    "content-type": "binance-connector sends application/json;charset=utf-8 with no body; "
    "python-binance sends form bodies; ours sends no body and so no content type",
    "accept": "python-binance asks for application/json; Binance answers JSON to any",
    "content-length": "follows the body (python-binance posts its parameters)",
    "accept-encoding": "transport detail of httpx vs requests",
    "connection": "transport detail",
}
PYTHON_BINANCE_PARAMS_IN_BODY = (
    "python-binance sends POST and DELETE parameters form-encoded in the body (sorted by "
    "name); Binance signs query + body, so the parameters and signature are the same"
)
PYTHON_BINANCE_NO_SYMBOL_EXCHANGE_INFO = (
    "python-binance has no per-symbol exchangeInfo call (get_symbol_info fetches every "
    "symbol); our instrument() is compared with binance-connector only"
)


def order_answer(params: dict[str, str], status: str = "NEW") -> dict[str, Any]:
    answer = copy.deepcopy(SPOT["order"])
    answer.update(
        symbol=params.get("symbol", "BTCUSDT"),
        clientOrderId=params.get("origClientOrderId", params.get("newClientOrderId", CID)),
        type="LIMIT",
        side="BUY",
        price="30000.00000000",
        origQty="0.01000000",
        executedQty="0",
        cummulativeQuoteQty="0",
        status=status,
    )
    return answer


def respond(request: Recorded) -> tuple[int, Any]:
    params = dict(request.params)
    route = (request.method, request.path)
    if route == ("POST", "/api/v3/order"):
        return 200, {**SPOT["orderResponseResult"], "clientOrderId": params["newClientOrderId"]}
    if route == ("GET", "/api/v3/order"):
        return 200, order_answer(params)
    if route == ("DELETE", "/api/v3/order"):
        return 200, order_answer(params, "CANCELED")
    if route == ("POST", "/api/v3/order/cancelReplace"):
        return 200, {
            "cancelResult": "SUCCESS",
            "newOrderResult": "SUCCESS",
            "cancelResponse": order_answer(params, "CANCELED"),
            "newOrderResponse": {
                **SPOT["orderResponseResult"],
                "clientOrderId": params["newClientOrderId"],
            },
        }
    if route == ("GET", "/api/v3/allOrders"):
        return 200, [order_answer(params)]
    if route == ("GET", "/api/v3/account"):
        # The spec's example leaves its lists null; Binance always sends them.
        return 200, {
            **SPOT["account"],
            "balances": [
                {"asset": "USDT", "free": "1000.00000000", "locked": "0.00000000"},
                {"asset": "BTC", "free": "0.01000000", "locked": "0.00000000"},
            ],
            "permissions": ["SPOT"],
        }
    if route == ("GET", "/api/v3/ticker/price"):
        if "symbol" in params:
            return 200, {"symbol": params["symbol"], "price": "30000.00000000"}
        return 200, [
            {"symbol": "BTCUSDT", "price": "30000.00000000"},
            {"symbol": "ETHUSDT", "price": "2000.00000000"},
        ]
    if route == ("GET", "/api/v3/exchangeInfo"):
        return 200, {
            "timezone": "UTC",
            "rateLimits": [],
            "exchangeFilters": [],
            "symbols": [
                {
                    "symbol": "BTCUSDT",
                    "status": "TRADING",
                    "baseAsset": "BTC",
                    "quoteAsset": "USDT",
                    "filters": [
                        {
                            "filterType": "LOT_SIZE",
                            "minQty": "0.00001000",
                            "maxQty": "9000.00000000",
                            "stepSize": "0.00001000",
                        },
                        {"filterType": "NOTIONAL", "minNotional": "5.00000000"},
                    ],
                }
            ],
        }
    return 400, {"code": -1100, "msg": f"unexpected {request.method} {request.path}"}


def signature_verifies(request: Recorded) -> bool:
    """Binance's rule: HMAC-SHA256(secret, query string + request body), signature excluded."""

    def without_signature(raw: str) -> str:
        return "&".join(p for p in raw.split("&") if p and not p.startswith("signature="))

    signature = dict(request.params)["signature"]
    total = without_signature(request.query) + without_signature(request.body)
    expected = hmac.new(SECRET.encode(), total.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


def shape(request: Recorded, *, params_in_body: bool = False) -> dict[str, Any]:
    """What must agree. `params_in_body` takes python-binance's body as its query
    (PYTHON_BINANCE_PARAMS_IN_BODY)."""
    params = request.params if params_in_body else request.query_params
    return {
        "method": request.method,
        "path": request.path,
        "params": sorted((n, "*" if n in VARYING_VALUES else v) for n, v in params),
        "body": [] if params_in_body else request.body_params,
        "headers": {k: v for k, v in request.headers.items() if k not in ALLOWED_HEADERS},
    }


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    with recording_server(respond) as recorder:
        yield recorder


@pytest.fixture
def connector(server: RecordingServer) -> Connector:
    client = Connector(API_KEY, SECRET, base_url=server.url)
    client.session.trust_env = False  # loopback only
    return client


@pytest.fixture
def python_binance(server: RecordingServer) -> PythonBinance:
    client = PythonBinance(API_KEY, SECRET, ping=False)
    client.API_URL = f"{server.url}/api"  # instead of https://api.binance.com/api
    client.session.trust_env = False
    client.REQUEST_RECVWINDOW = c.RECV_WINDOW_MS  # its default is 10000; ours 5000
    return client


@pytest.fixture(params=ADAPTER_CLIENTS)
async def http(server: RecordingServer, request: pytest.FixtureRequest) -> Any:
    async with adapter_http(request.param, server.url) as client:
        yield client


class ChargedBudget(RateBudget):
    """A host budget that records what it is charged (the token bucket itself is tested on
    Redis in tests/integration/test_ratelimit.py)."""

    def __init__(self) -> None:
        self.charged: list[float] = []

    @property
    def batches(self) -> None:
        return None  # charged through acquire, not in Valkey

    async def acquire(self, cost: float = 1.0) -> None:
        self.charged.append(cost)


def order(kind: OrderType, tif: TimeInForce, side: Side = Side.BUY) -> OrderRequest:
    return OrderRequest(
        CID,
        "BTCUSDT",
        side,
        Decimal("0.01"),
        kind,
        tif,
        limit_price=Decimal("30000") if kind in (OrderType.LIMIT, OrderType.STOP_LIMIT) else None,
        stop_price=Decimal("29500") if kind in (OrderType.STOP, OrderType.STOP_LIMIT) else None,
    )


def new_order_params(kind: str, side: str, **extra: str) -> dict[str, str]:
    return {
        "symbol": "BTCUSDT",
        "side": side,
        "type": kind,
        "quantity": "0.01",
        "newClientOrderId": CID,
        "newOrderRespType": "RESULT",
        "recvWindow": str(c.RECV_WINDOW_MS),
        **extra,
    }


REPLACE = {
    "symbol": "BTCUSDT",
    "side": "BUY",
    "type": "LIMIT",
    "cancelReplaceMode": "STOP_ON_FAILURE",
    "cancelOrderId": "28",
    "newClientOrderId": "Zz12Cd34Ef56Gh78Ij90",
    "quantity": "0.02",
    "price": "30100",
    "timeInForce": "GTC",
    "newOrderRespType": "RESULT",
    "recvWindow": str(c.RECV_WINDOW_MS),
}
RW = {"recvWindow": str(c.RECV_WINDOW_MS)}

Ours = Callable[[BinanceBroker], Awaitable[Any]]
Theirs = Callable[[Any], Any]
# operation, our call, binance-connector's calls, python-binance's calls (None: not comparable)
CASES: list[tuple[str, str, Ours, list[Theirs], list[Theirs] | None]] = [
    (
        "place_order",
        "limit-gtc",
        lambda b: b.place_order(order(OrderType.LIMIT, TimeInForce.GTC)),
        [
            lambda s: s.new_order(
                **new_order_params("LIMIT", "BUY", price="30000", timeInForce="GTC")
            )
        ],
        [
            lambda p: p.create_order(
                **new_order_params("LIMIT", "BUY", price="30000", timeInForce="GTC")
            )
        ],
    ),
    (
        "place_order",
        "market-day",
        lambda b: b.place_order(order(OrderType.MARKET, TimeInForce.DAY, Side.SELL)),
        [lambda s: s.new_order(**new_order_params("MARKET", "SELL"))],
        [lambda p: p.create_order(**new_order_params("MARKET", "SELL"))],
    ),
    (
        "place_order",
        "stop-day",
        lambda b: b.place_order(order(OrderType.STOP, TimeInForce.DAY, Side.SELL)),
        [lambda s: s.new_order(**new_order_params("STOP_LOSS", "SELL", stopPrice="29500"))],
        [lambda p: p.create_order(**new_order_params("STOP_LOSS", "SELL", stopPrice="29500"))],
    ),
    (
        "place_order",
        "stop_limit-ioc",
        lambda b: b.place_order(order(OrderType.STOP_LIMIT, TimeInForce.IOC, Side.SELL)),
        [
            lambda s: s.new_order(
                **new_order_params(
                    "STOP_LOSS_LIMIT", "SELL", price="30000", stopPrice="29500", timeInForce="IOC"
                )
            )
        ],
        [
            lambda p: p.create_order(
                **new_order_params(
                    "STOP_LOSS_LIMIT", "SELL", price="30000", stopPrice="29500", timeInForce="IOC"
                )
            )
        ],
    ),
    (
        "get_order_by_client_id",
        "lookup",
        lambda b: b.get_order_by_client_id(CID, "BTCUSDT"),
        [lambda s: s.get_order("BTCUSDT", origClientOrderId=CID, **RW)],
        [lambda p: p.get_order(symbol="BTCUSDT", origClientOrderId=CID, **RW)],
    ),
    (
        "cancel_order",
        "cancel",
        lambda b: b.cancel_order("28", "BTCUSDT"),
        [lambda s: s.cancel_order("BTCUSDT", orderId="28", **RW)],
        [lambda p: p.cancel_order(symbol="BTCUSDT", orderId="28", **RW)],
    ),
    (
        "replace_order",
        "replace",
        lambda b: b.replace_order(
            "28", "Zz12Cd34Ef56Gh78Ij90", Decimal("0.02"), Decimal("30100"), None, "BTCUSDT"
        ),
        [
            lambda s: s.get_order("BTCUSDT", orderId="28", **RW),
            lambda s: s.cancel_and_replace(**REPLACE),
        ],
        [
            lambda p: p.get_order(symbol="BTCUSDT", orderId="28", **RW),
            lambda p: p.cancel_replace_order(**REPLACE),
        ],
    ),
    (
        "list_orders",
        "all-orders-per-watched-symbol",
        lambda b: b.list_orders(START),
        [
            lambda s, symbol=symbol: s.get_orders(symbol, limit=1000, startTime=START_MS, **RW)
            for symbol in WATCHED
        ],
        [
            lambda p, symbol=symbol: p.get_all_orders(
                symbol=symbol, limit="1000", startTime=START_MS, **RW
            )
            for symbol in WATCHED
        ],
    ),
    (
        "positions",
        "account",
        lambda b: b.positions(),
        [lambda s: s.account(**RW)],
        [lambda p: p.get_account(**RW)],
    ),
    (
        "account",
        "account-and-every-price",
        lambda b: b.account(),
        [lambda s: s.account(**RW), lambda s: s.ticker_price()],
        [lambda p: p.get_account(**RW), lambda p: p.get_all_tickers()],
    ),
    (
        "instrument",
        "exchange-info-one-symbol",
        lambda b: b.instrument("BTCUSDT"),
        [lambda s: s.exchange_info(symbol="BTCUSDT")],
        None,  # PYTHON_BINANCE_NO_SYMBOL_EXCHANGE_INFO
    ),
    (
        "last_price",
        "ticker-one-symbol",
        lambda b: b.last_price("BTCUSDT"),
        [lambda s: s.ticker_price("BTCUSDT")],
        [lambda p: p.get_symbol_ticker(symbol="BTCUSDT")],
    ),
]


def by_route(requests: list[Recorded]) -> list[Recorded]:
    """Our account() sends its two requests concurrently: compare them in a stable order."""
    return sorted(requests, key=lambda r: (r.method, r.path, r.query))


def by_route_shape(shapes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(shapes, key=lambda s: (s["method"], s["path"], json.dumps(s["params"])))


@pytest.mark.parametrize(
    "operation,ours,connector_calls,python_binance_calls",
    [case[:1] + case[2:] for case in CASES],
    ids=[case[1] for case in CASES],
)
async def test_requests_match_the_official_clients(
    server: RecordingServer,
    http: httpx.AsyncClient,
    connector: Connector,
    python_binance: PythonBinance,
    operation: str,
    ours: Ours,
    connector_calls: list[Theirs],
    python_binance_calls: list[Theirs] | None,
) -> None:
    budget = ChargedBudget()
    adapter = BinanceBroker(http, API_KEY, SECRET, watch_symbols=WATCHED)
    budgeted = BudgetedBroker(adapter, DESCRIPTOR.limits, None, budget, CircuitBreaker())
    await ours(budgeted)  # type: ignore[arg-type]
    sent = server.take()
    for call in connector_calls:
        call(connector)
    by_connector = server.take()
    our_shapes = by_route_shape([shape(r) for r in sent])
    assert our_shapes == by_route_shape([shape(r) for r in by_connector])
    if python_binance_calls is not None:
        for call in python_binance_calls:
            call(python_binance)
        by_python_binance = server.take()
        assert our_shapes == by_route_shape(
            [shape(r, params_in_body=r.method != "GET") for r in by_python_binance]
        )
        for r in by_python_binance:
            if r.method != "GET":
                assert r.query == "" and "signature=" in r.body  # PYTHON_BINANCE_PARAMS_IN_BODY
        by_connector += by_python_binance
    for request in sent + by_connector:
        if "signature" in dict(request.params):
            assert signature_verifies(request), request
            assert request.headers["x-mbx-apikey"] == API_KEY
    # The weight we charge is the weight of what we sent (Binance's table), request by request.
    spent = sum(c.REQUEST_WEIGHTS[(r.method, r.path, "symbol" in dict(r.params))] for r in sent)
    assert adapter.request_weight(operation) == spent
    assert budget.charged == [spent]


def test_every_allowed_difference_is_documented() -> None:
    documented = {
        **VARYING_VALUES,
        **ALLOWED_HEADERS,
        "body": PYTHON_BINANCE_PARAMS_IN_BODY,
        "exchangeInfo": PYTHON_BINANCE_NO_SYMBOL_EXCHANGE_INFO,
    }
    assert all(documented.values())
    assert "x-mbx-apikey" not in ALLOWED_HEADERS
    assert {op for op, *_ in CASES} == set(c.OPERATION_REQUESTS)  # every operation compared
