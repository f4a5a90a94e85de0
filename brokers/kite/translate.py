"""Pure translation between Kite Connect v3's wire format and our domain values."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from brokers.kite import constants as c
from brokers.transport import retry_after
from replication.errors import BrokerError, Fatal, Rejected, Retryable, Unknown
from replication.model import AccountSnapshot, BrokerOrder, OrderRequest, Position
from replication.state import LegStatus
from schemas.common import OrderType, format_decimal


def order_form(request: OrderRequest, exchange: str, product: str) -> dict[str, str]:
    """Form fields of POST /orders/regular; our client order id travels as `tag`.
    Raises Rejected (`time_in_force_unsupported`) for a time in force Kite cannot honour."""
    tif = request.time_in_force.value
    if tif not in c.VALIDITY:
        raise Rejected(c.UNSUPPORTED_TIME_IN_FORCE[tif], code="time_in_force_unsupported")
    order_type = c.ORDER_TYPES[request.type.value]
    form = {
        "tradingsymbol": request.symbol,
        "exchange": exchange,
        "transaction_type": request.side.value.upper(),
        "order_type": order_type,
        "quantity": format_decimal(request.qty),
        "product": product,
        "validity": c.VALIDITY[tif],
        "tag": request.client_order_id,
    }
    if order_type in c.MARKET_PROTECTED_ORDER_TYPES:
        form["market_protection"] = c.MARKET_PROTECTION_AUTO
    if request.type in (OrderType.LIMIT, OrderType.STOP_LIMIT):
        assert request.limit_price is not None
        form["price"] = format_decimal(request.limit_price)
    if request.type in (OrderType.STOP, OrderType.STOP_LIMIT):
        assert request.stop_price is not None
        form["trigger_price"] = format_decimal(request.stop_price)
    return form


def parse_order(data: dict[str, Any]) -> BrokerOrder:
    status = str(data["status"])
    if status not in c.STATUS_MAP:
        raise Unknown(f"unmapped kite order status {status!r}")
    filled = Decimal(str(data.get("filled_quantity") or 0))
    mapped = c.STATUS_MAP[status]
    if mapped is LegStatus.ACCEPTED and filled > 0:
        mapped = LegStatus.PARTIALLY_FILLED
    average = Decimal(str(data.get("average_price") or 0))
    return BrokerOrder(
        broker_order_id=str(data["order_id"]),
        client_order_id=str(data.get("tag") or ""),
        status=mapped,
        broker_status=status,
        filled_qty=filled,
        filled_avg_price=average if filled > 0 else None,
        reason=data.get("status_message") if mapped is LegStatus.REJECTED else None,
    )


def parse_positions(data: dict[str, Any]) -> list[Position]:
    return [
        Position(
            symbol=str(p["tradingsymbol"]),
            qty=Decimal(str(p["quantity"])),
            avg_entry_price=Decimal(str(p.get("average_price") or 0)),
        )
        for p in data.get("net", [])
        if Decimal(str(p["quantity"])) != 0
    ]


def parse_margins(data: dict[str, Any]) -> AccountSnapshot:
    """Equity segment margins: net is the equity; opening balance anchors the day's P&L."""
    available = data.get("available", {})
    net = Decimal(str(data["net"]))
    opening = available.get("opening_balance")
    return AccountSnapshot(
        account_id="",
        equity=net,
        cash=Decimal(str(available.get("cash", 0))),
        currency="INR",
        last_equity=None if opening is None else Decimal(str(opening)),
    )


def error_for(status: int, body: Any, retry_after_header: str | None) -> BrokerError:
    error_type = body.get("error_type") if isinstance(body, dict) else None
    message = str(body.get("message") if isinstance(body, dict) else body)[:300]
    if status == 429:
        return Retryable(message, retry_after=retry_after(retry_after_header), code="rate_limited")
    if error_type in c.FATAL_ERRORS or status in (401, 403):
        return Fatal(message, code="unauthorized")
    if status >= 500 or error_type in c.UNKNOWN_ERRORS:
        return Unknown(f"kite {status}: {message}", code=f"http_{status}")
    if error_type == "MarginException":
        return Rejected(message, code="insufficient_funds")
    return Rejected(message, code=(error_type or f"http_{status}").lower())
