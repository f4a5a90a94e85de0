"""Pure translation between Binance Spot's wire format and our domain values."""

from __future__ import annotations

import hashlib
import hmac
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from brokers.binance import constants as c
from brokers.transport import retry_after
from replication.errors import (
    BrokerError,
    DuplicateClientOrderId,
    Fatal,
    NotFound,
    Rejected,
    Retryable,
    Unknown,
)
from replication.model import AccountSnapshot, BrokerOrder, Instrument, OrderRequest, Position
from schemas.common import OrderType, format_decimal


def sign(params: dict[str, str], secret: str) -> str:
    """The query string with its HMAC-SHA256 `signature` appended (Binance SIGNED endpoints)."""
    query = urlencode(params)
    signature = hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    return f"{query}&signature={signature}"


def order_params(request: OrderRequest) -> dict[str, str]:
    """Query parameters of POST /api/v3/order. Raises Rejected (`time_in_force_unsupported`)
    for a time in force Binance cannot honour for this order type."""
    refusal = c.UNSUPPORTED_TIME_IN_FORCE.get((request.type.value, request.time_in_force.value))
    if refusal is not None:
        raise Rejected(refusal, code="time_in_force_unsupported")
    params = {
        "symbol": request.symbol,
        "side": request.side.value.upper(),
        "type": c.ORDER_TYPES[request.type.value],
        "quantity": format_decimal(request.qty),
        "newClientOrderId": request.client_order_id,
        "newOrderRespType": "RESULT",
    }
    if request.type in (OrderType.LIMIT, OrderType.STOP_LIMIT):
        assert request.limit_price is not None
        params["price"] = format_decimal(request.limit_price)
        params["timeInForce"] = c.TIME_IN_FORCE[request.time_in_force.value]
    if request.type in (OrderType.STOP, OrderType.STOP_LIMIT):
        assert request.stop_price is not None
        params["stopPrice"] = format_decimal(request.stop_price)
    return params


def parse_order(data: dict[str, Any]) -> BrokerOrder:
    status = str(data["status"])
    if status not in c.STATUS_MAP:
        raise Unknown(f"unmapped binance order status {status!r}")
    executed = Decimal(str(data.get("executedQty") or "0"))
    quote = Decimal(str(data.get("cummulativeQuoteQty") or "0"))
    return BrokerOrder(
        broker_order_id=str(data["orderId"]),
        client_order_id=str(data.get("clientOrderId") or ""),
        status=c.STATUS_MAP[status],
        broker_status=status,
        filled_qty=executed,
        filled_avg_price=(quote / executed) if executed > 0 else None,
    )


def parse_instrument(data: dict[str, Any], symbol: str) -> Instrument:
    info = next((s for s in data.get("symbols", []) if s.get("symbol") == symbol), None)
    if info is None:
        raise Rejected(f"binance exchangeInfo lists no symbol {symbol}", code="unknown_symbol")
    filters = {f["filterType"]: f for f in info.get("filters", [])}
    lot = filters.get("LOT_SIZE", {})
    notional = filters.get("NOTIONAL") or filters.get("MIN_NOTIONAL") or {}
    step = Decimal(str(lot.get("stepSize", "1"))).normalize()
    return Instrument(
        symbol,
        qty_step=step if step > 0 else Decimal(1),
        min_qty=Decimal(str(lot.get("minQty", "0"))).normalize(),
        min_notional=Decimal(str(notional.get("minNotional", "0"))).normalize(),
    )


def parse_positions(account: dict[str, Any], quote: str) -> list[Position]:
    """Spot balances as positions in `<asset><quote>` pairs (the quote asset itself is cash)."""
    out = []
    for balance in account.get("balances", []):
        qty = Decimal(str(balance["free"])) + Decimal(str(balance["locked"]))
        if qty != 0 and balance["asset"] != quote:
            out.append(
                Position(symbol=f"{balance['asset']}{quote}", qty=qty, avg_entry_price=Decimal(0))
            )
    return out


def parse_account(
    account: dict[str, Any], prices: dict[str, Decimal], quote: str
) -> AccountSnapshot:
    """Equity in the quote asset: cash plus every balance at its last price. Binance reports
    no start-of-day equity, so the day's P&L is unknown (a daily loss limit: closes only)."""
    cash = Decimal(0)
    equity = Decimal(0)
    for balance in account.get("balances", []):
        qty = Decimal(str(balance["free"])) + Decimal(str(balance["locked"]))
        if balance["asset"] == quote:
            cash = Decimal(str(balance["free"]))
            equity += qty
        elif qty:
            equity += qty * prices.get(f"{balance['asset']}{quote}", Decimal(0))
    return AccountSnapshot(
        account_id=str(account.get("uid", "")), equity=equity, cash=cash, currency=quote
    )


def error_for(
    status: int, body: Any, retry_after_header: str | None, *, lookup: bool = False
) -> BrokerError:
    code = body.get("code") if isinstance(body, dict) else None
    message = str(body.get("msg") if isinstance(body, dict) else body)[:300]
    if status in (429, 418):
        return Retryable(
            message,
            retry_after=retry_after(retry_after_header, 60.0),
            code="ip_banned" if status == 418 else "rate_limited",
        )
    if status >= 500 or code == c.UNKNOWN_EXECUTION:
        return Unknown(f"binance {status}: {message}", code=f"http_{status}")
    if code == c.TOO_MANY_REQUESTS:
        return Retryable(
            message, retry_after=retry_after(retry_after_header, 60.0), code="rate_limited"
        )
    if code == c.TIMESTAMP_OUTSIDE_WINDOW:
        return Retryable(message, retry_after=1.0, code="clock_skew")
    if code in (c.BAD_SIGNATURE, c.BAD_API_KEY_FORMAT, c.REJECTED_API_KEY) or status == 401:
        return Fatal(message, code="unauthorized")
    if code == c.NO_SUCH_ORDER:
        return NotFound(message) if lookup else Rejected(message, code="not_found")
    if code == c.NEW_ORDER_REJECTED and message == c.DUPLICATE_ORDER_MESSAGE:
        return DuplicateClientOrderId(message)
    if code == c.NEW_ORDER_REJECTED and "insufficient balance" in message.lower():
        return Rejected(message, code="insufficient_funds")
    return Rejected(message, code=f"binance_{code}" if code is not None else f"http_{status}")


def replace_params(
    current: dict[str, Any],
    client_order_id: str,
    qty: Decimal,
    limit_price: Decimal | None,
    stop_price: Decimal | None,
) -> dict[str, str]:
    """POST /api/v3/order/cancelReplace for `current` (an order as GET /api/v3/order returns)."""
    order_type, tif = str(current["type"]), str(current.get("timeInForce") or "GTC")
    limit_price = (
        limit_price
        if limit_price is not None
        else (Decimal(str(current["price"])) if "LIMIT" in order_type else None)
    )
    stop_price = (
        stop_price
        if stop_price is not None
        else (Decimal(str(current["stopPrice"])) if "STOP" in order_type else None)
    )
    params = {
        "symbol": str(current["symbol"]),
        "side": str(current["side"]),
        "cancelReplaceMode": "STOP_ON_FAILURE",
        "cancelOrderId": str(current["orderId"]),
        "newClientOrderId": client_order_id,
        "quantity": format_decimal(qty),
        "type": order_type,
        "newOrderRespType": "RESULT",
    }
    if limit_price is not None:
        params["price"] = format_decimal(limit_price)
        params["timeInForce"] = tif
    if stop_price is not None:
        params["stopPrice"] = format_decimal(stop_price)
    return params
