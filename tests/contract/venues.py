"""Fake venues that speak each broker's documented wire format (built from the brokers' own
examples in tests/resources), behind httpx.MockTransport. They keep orders, so the contract
suite can count what really reached the venue, and take one programmed fault at a time."""

from __future__ import annotations

import copy
import hashlib
import hmac
import itertools
import json
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx

RESOURCES = Path(__file__).resolve().parents[1] / "resources"
ALPACA = json.loads((RESOURCES / "alpaca" / "order_examples.json").read_text())
BINANCE = json.loads((RESOURCES / "binance" / "spot_examples.json").read_text())
KITE_ORDER = json.loads((RESOURCES / "kite" / "order_info.json").read_text())["data"][0]


@dataclass
class Order:
    id: str
    cid: str
    symbol: str
    side: str
    qty: Decimal
    kind: str
    status: str = "new"  # new | partially_filled | filled | canceled
    filled: Decimal = Decimal(0)
    price: Decimal = Decimal("100")


@dataclass
class Venue:
    """Broker-neutral order book with one pending fault."""

    orders: dict[str, Order] = field(default_factory=dict)
    fault: str | None = (
        None  # reject | timeout_after_store | error_after_store | rate_limit | partial
    )
    retry_after: int = 7
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))

    def take_fault(self) -> str | None:
        fault, self.fault = self.fault, None
        return fault

    def place(
        self, cid: str, symbol: str, side: str, qty: Decimal, kind: str, partial: bool
    ) -> Order:
        order = Order(str(next(self.ids)), cid, symbol, side, qty, kind)
        if kind == "market":
            order.filled = (qty / 2).to_integral_value() if partial else qty
            order.status = "partially_filled" if partial else "filled"
        self.orders[order.id] = order
        return order

    def by_cid(self, cid: str) -> Order | None:
        return next((o for o in self.orders.values() if o.cid == cid), None)

    def count(self, cid: str) -> int:
        return sum(1 for o in self.orders.values() if o.cid == cid)


def _timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("venue accepted the order but never answered", request=request)


# Alpaca ------------------------------------------------------------------------------------
def alpaca_handler(venue: Venue) -> Any:
    statuses = {
        "new": "accepted",
        "partially_filled": "partially_filled",
        "filled": "filled",
        "canceled": "canceled",
    }

    def render(order: Order) -> dict[str, Any]:
        body = copy.deepcopy(ALPACA["EquityOrderResponse"])
        body.update(
            id=order.id,
            client_order_id=order.cid,
            symbol=order.symbol,
            side=order.side,
            qty=str(order.qty),
            filled_qty=str(order.filled),
            type=order.kind,
            order_type=order.kind,
            status=statuses[order.status],
            filled_avg_price=str(order.price) if order.filled else None,
        )
        return body

    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST" and path == "/v2/orders":
            fault = venue.take_fault()
            if fault == "reject":
                return httpx.Response(
                    403, json={"code": 40310000, "message": "insufficient buying power"}
                )
            if fault == "rate_limit":
                return httpx.Response(
                    429,
                    json={"code": 42910000, "message": "rate limit exceeded"},
                    headers={"Retry-After": str(venue.retry_after)},
                )
            body = json.loads(request.content)
            if venue.by_cid(body["client_order_id"]):
                return httpx.Response(
                    422, json={"code": 40010001, "message": "client_order_id must be unique"}
                )
            order = venue.place(
                body["client_order_id"],
                body["symbol"],
                body["side"],
                Decimal(body["qty"]),
                body["type"],
                fault == "partial",
            )
            if fault == "timeout_after_store":
                return _timeout(request)
            if fault == "error_after_store":
                return httpx.Response(500, json={"message": "internal server error"})
            return httpx.Response(200, json=render(order))
        if path == "/v2/orders:by_client_order_id":
            found = venue.by_cid(request.url.params["client_order_id"])
            if found is None:
                return httpx.Response(404, json={"code": 40410000, "message": "order not found"})
            return httpx.Response(200, json=render(found))
        if request.method == "DELETE" and path.startswith("/v2/orders/"):
            found = venue.orders.get(path.rsplit("/", 1)[1])
            if found is None:
                return httpx.Response(404, json={"code": 40410000, "message": "order not found"})
            if found.status == "filled":
                return httpx.Response(
                    422, json={"code": 42210000, "message": "order is not cancelable"}
                )
            found.status = "canceled"
            return httpx.Response(204)
        return httpx.Response(404, json={"code": 40410000, "message": "not found"})

    return handle


# Binance -----------------------------------------------------------------------------------
def binance_handler(venue: Venue, api_key: str, secret: str) -> Any:
    statuses = {
        "new": "NEW",
        "partially_filled": "PARTIALLY_FILLED",
        "filled": "FILLED",
        "canceled": "CANCELED",
    }
    documented = BINANCE["parameters"]

    def render(order: Order) -> dict[str, Any]:
        body = dict(BINANCE["orderResponseResult"])
        body.update(
            symbol=order.symbol,
            orderId=int(order.id),
            clientOrderId=order.cid,
            origQty=f"{order.qty:.8f}",
            executedQty=f"{order.filled:.8f}",
            cummulativeQuoteQty=f"{order.filled * order.price:.8f}",
            status=statuses[order.status],
            side=order.side.upper(),
            type=order.kind.upper(),
        )
        return body

    def error(
        status: int, code: int, msg: str, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        return httpx.Response(status, json={"code": code, "msg": msg}, headers=headers)

    def handle(request: httpx.Request) -> httpx.Response:
        query = request.url.query.decode()
        params = dict(parse_qsl(query))
        endpoint = f"{request.method} {request.url.path}"
        # Wire fidelity: every parameter we send is one the spec documents for the endpoint.
        assert set(params) <= set(documented[endpoint]), (
            endpoint,
            set(params) - set(documented[endpoint]),
        )
        if "signature" in params:
            assert request.headers["X-MBX-APIKEY"] == api_key
            unsigned, _, signature = query.rpartition("&signature=")
            expected = hmac.new(secret.encode(), unsigned.encode(), hashlib.sha256).hexdigest()
            if signature != expected:
                return error(400, -1022, "Signature for this request is not valid.")
        if endpoint == "POST /api/v3/order":
            fault = venue.take_fault()
            if fault == "reject":
                return error(400, -2010, "Account has insufficient balance for requested action.")
            if fault == "rate_limit":
                return error(
                    429,
                    -1003,
                    "Too many requests; please use the websocket.",
                    {"Retry-After": str(venue.retry_after)},
                )
            if venue.by_cid(params["newClientOrderId"]):
                return error(400, -2010, "Duplicate order sent.")
            order = venue.place(
                params["newClientOrderId"],
                params["symbol"],
                params["side"].lower(),
                Decimal(params["quantity"]),
                params["type"].lower(),
                fault == "partial",
            )
            if fault == "timeout_after_store":
                return _timeout(request)
            if fault == "error_after_store":
                return httpx.Response(503, text="Service Unavailable")
            return httpx.Response(200, json=render(order))
        if endpoint == "GET /api/v3/order":
            found = venue.by_cid(params.get("origClientOrderId", "")) or venue.orders.get(
                params.get("orderId", "")
            )
            if found is None:
                return error(400, -2013, "Order does not exist.")
            return httpx.Response(200, json=render(found))
        if endpoint == "DELETE /api/v3/order":
            found = venue.orders.get(params.get("orderId", ""))
            if found is None or found.status in ("filled", "canceled"):
                return error(400, -2011, "Unknown order sent.")
            found.status = "canceled"
            return httpx.Response(200, json=render(found))
        return error(404, -1000, "unknown endpoint")

    return handle


# Kite --------------------------------------------------------------------------------------
def kite_handler(venue: Venue, api_key: str, access_token: str) -> Any:
    statuses = {
        "new": "OPEN",
        "partially_filled": "OPEN",
        "filled": "COMPLETE",
        "canceled": "CANCELLED",
    }
    documented = {
        "tradingsymbol",
        "exchange",
        "transaction_type",
        "order_type",
        "quantity",
        "product",
        "price",
        "trigger_price",
        "disclosed_quantity",
        "validity",
        "validity_ttl",
        "iceberg_legs",
        "iceberg_quantity",
        "tag",
        "market_protection",
    }

    def render(order: Order) -> dict[str, Any]:
        body = dict(KITE_ORDER)
        body.update(
            order_id=order.id,
            tag=order.cid,
            tradingsymbol=order.symbol,
            transaction_type=order.side.upper(),
            quantity=int(order.qty),
            filled_quantity=int(order.filled),
            pending_quantity=int(order.qty - order.filled),
            average_price=float(order.price) if order.filled else 0,
            status=statuses[order.status],
            order_type=order.kind.upper(),
        )
        return body

    def error(
        status: int, error_type: str, message: str, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        return httpx.Response(
            status,
            json={"status": "error", "message": message, "error_type": error_type},
            headers=headers,
        )

    def ok(data: Any) -> httpx.Response:
        return httpx.Response(200, json={"status": "success", "data": data})

    def handle(request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == f"token {api_key}:{access_token}"
        assert request.headers["X-Kite-Version"] == "3"
        path = request.url.path
        if request.method == "POST" and path == "/orders/regular":
            form = dict(parse_qsl(request.content.decode()))
            assert set(form) <= documented, set(form) - documented
            if form["order_type"] in ("MARKET", "SL-M") and "market_protection" not in form:
                return error(
                    400,
                    "InputException",
                    "Market orders without market protection are not allowed via API.",
                )
            assert len(form["tag"]) <= 20 and form["tag"].isalnum()
            fault = venue.take_fault()
            if fault == "reject":
                return error(
                    400,
                    "MarginException",
                    "Insufficient funds. Required margin is 1000.00 but available margin is 10.00.",
                )
            if fault == "rate_limit":
                return error(
                    429,
                    "NetworkException",
                    "Too many requests",
                    {"Retry-After": str(venue.retry_after)},
                )
            # Kite accepts a repeated tag: duplicates are ours to prevent.
            order = venue.place(
                form["tag"],
                form["tradingsymbol"],
                form["transaction_type"].lower(),
                Decimal(form["quantity"]),
                form["order_type"].lower(),
                fault == "partial",
            )
            if fault == "timeout_after_store":
                return _timeout(request)
            if fault == "error_after_store":
                return error(503, "NetworkException", "Gateway timed out")
            return ok({"order_id": order.id})
        if request.method == "GET" and path == "/orders":
            return ok([render(o) for o in venue.orders.values()])
        if request.method == "GET" and path.startswith("/orders/"):
            found = venue.orders.get(path.rsplit("/", 1)[1])
            if found is None:
                return error(400, "InputException", "Couldn't find that `order_id`.")
            return ok([render(found)])
        if request.method == "DELETE" and path.startswith("/orders/regular/"):
            found = venue.orders.get(path.rsplit("/", 1)[1])
            if found is None or found.status in ("filled", "canceled"):
                return error(
                    400,
                    "InputException",
                    "Order cannot be cancelled as it is being processed. Try later.",
                )
            found.status = "canceled"
            return ok({"order_id": found.id})
        return error(404, "GeneralException", "Route not found")

    return handle
