"""Pure translation between Alpaca's wire JSON and our domain values, errors included."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from brokers.alpaca.constants import (
    DUPLICATE_CLIENT_ORDER_ID_MESSAGE,
    FRACTIONAL_MIN_NOTIONAL,
    FRACTIONAL_QTY_STEP,
    STATUS_MAP,
)
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
from schemas.common import OrderType, Side, TimeInForce, format_decimal


def order_request_body(request: OrderRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "symbol": request.symbol,
        "qty": format_decimal(request.qty),
        "side": request.side.value,
        "type": request.type.value,
        "time_in_force": request.time_in_force.value,
        "client_order_id": request.client_order_id,
    }
    if request.type in (OrderType.LIMIT, OrderType.STOP_LIMIT) and request.limit_price is not None:
        body["limit_price"] = format_decimal(request.limit_price)
    if request.type in (OrderType.STOP, OrderType.STOP_LIMIT) and request.stop_price is not None:
        body["stop_price"] = format_decimal(request.stop_price)
    return body


def replace_request_body(
    client_order_id: str, qty: Decimal, limit_price: Decimal | None, stop_price: Decimal | None
) -> dict[str, Any]:
    """Body of Alpaca's PATCH /v2/orders/{order_id}."""
    body: dict[str, Any] = {"qty": format_decimal(qty), "client_order_id": client_order_id}
    if limit_price is not None:
        body["limit_price"] = format_decimal(limit_price)
    if stop_price is not None:
        body["stop_price"] = format_decimal(stop_price)
    return body


def _decimal(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    return Decimal(value) if type(value) is str else Decimal(str(value))


# Wire values → enums by dict lookup (an answer is parsed per leg: no enum construction,
# no scan of __members__).
_SIDES = {side.value: side for side in Side}
_ORDER_TYPES = {kind.value: kind for kind in OrderType}
_TIFS = {tif.value: tif for tif in TimeInForce}


def parse_order(data: dict[str, Any]) -> BrokerOrder:
    broker_status = str(data["status"])
    try:
        status = STATUS_MAP[broker_status]
    except KeyError as exc:
        raise Unknown(f"unmapped alpaca order status {broker_status!r}") from exc
    get = data.get
    created = get("created_at")
    replaces = get("replaces")
    return BrokerOrder(
        broker_order_id=str(data["id"]),
        client_order_id=str(get("client_order_id") or ""),
        status=status,
        broker_status=broker_status,
        filled_qty=_decimal(get("filled_qty")) or Decimal("0"),
        filled_avg_price=_decimal(get("filled_avg_price")),
        symbol=get("symbol"),
        side=_SIDES.get(get("side")),  # type: ignore[arg-type]
        qty=_decimal(get("qty")),
        order_type=_ORDER_TYPES.get(str(get("type") or get("order_type") or "")),
        time_in_force=_TIFS.get(str(get("time_in_force") or "")),
        limit_price=_decimal(get("limit_price")),
        stop_price=_decimal(get("stop_price")),
        created_at=_timestamp(created) if created else None,
        replaces=str(replaces) if replaces else None,
    )


def _timestamp(value: str) -> datetime:
    """Alpaca's RFC 3339 with nanoseconds → datetime (microseconds, truncated)."""
    try:
        return datetime.fromisoformat(value)  # 3.11+: "Z" and any number of digits
    except ValueError:
        pass
    text = value.replace("Z", "+00:00")
    head, _, rest = text.partition(".")
    if rest:
        digits = rest[: len(rest) - len(rest.lstrip("0123456789"))]
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    return datetime.fromisoformat(text)


def parse_account(data: dict[str, Any]) -> AccountSnapshot:
    return AccountSnapshot(
        account_id=str(data["id"]),
        equity=Decimal(str(data.get("equity") or "0")),
        cash=Decimal(str(data.get("cash") or "0")),
        currency=str(data.get("currency") or "USD"),
        last_equity=_decimal(data.get("last_equity")),
    )


def parse_asset(data: dict[str, Any]) -> Instrument:
    """Whole shares unless fractionable; crypto-style minimums win when the asset has them."""
    symbol = str(data["symbol"])
    if data.get("tradable") is False or data.get("status", "active") != "active":
        return Instrument(symbol, tradable=False)
    increment = _decimal(data.get("min_trade_increment"))
    minimum = _decimal(data.get("min_order_size"))
    if increment is not None:
        return Instrument(symbol, qty_step=increment, min_qty=minimum or increment)
    if data.get("fractionable"):
        return Instrument(
            symbol,
            qty_step=Decimal(FRACTIONAL_QTY_STEP),
            min_qty=minimum or Decimal(FRACTIONAL_QTY_STEP),
            min_notional=Decimal(FRACTIONAL_MIN_NOTIONAL),
        )
    return Instrument(symbol, qty_step=Decimal(1), min_qty=minimum or Decimal(1))


def parse_latest_trade(data: dict[str, Any]) -> Decimal:
    return Decimal(str(data["trade"]["p"]))


def parse_position(data: dict[str, Any]) -> Position:
    qty = Decimal(str(data["qty"]))
    if data.get("side") == "short" and qty > 0:
        qty = -qty
    return Position(
        symbol=str(data["symbol"]), qty=qty, avg_entry_price=Decimal(str(data["avg_entry_price"]))
    )


def _message(body: Any) -> str:
    if isinstance(body, dict):
        return str(body.get("message") or body)
    return str(body)[:200]


def error_for(
    status: int, body: Any, retry_after_header: str | None, *, lookup: bool = False
) -> BrokerError:
    """Map a non-2xx Alpaca answer onto the error taxonomy."""
    message = _message(body)
    if status == 429:
        return Retryable(
            f"rate limited: {message}",
            retry_after=retry_after(retry_after_header),
            code="rate_limited",
        )
    if status == 401:
        return Fatal(f"unauthorized: {message}", code="unauthorized")
    if status == 403:
        if message.strip().rstrip(".").lower() == "forbidden":
            return Fatal(f"forbidden: {message}", code="forbidden")
        return Rejected(message, code="insufficient_funds")
    if status == 404:
        if lookup:
            return NotFound(message)
        return Rejected(message, code="not_found")
    if status == 422 and DUPLICATE_CLIENT_ORDER_ID_MESSAGE in message:
        return DuplicateClientOrderId(message)
    if 400 <= status < 500:
        return Rejected(message, code=f"http_{status}")
    return Unknown(f"broker answered {status}: {message}", code=f"http_{status}")
