"""Validation of a new order's body (POST /v2/orders, and the merged body of a replace)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from brokers.sim.model import SimError

_SIDES = {"buy", "sell"}
_TYPES = {"market", "limit", "stop", "stop_limit"}
_TIFS = {"day", "gtc", "ioc", "fok"}
_UNSUPPORTED_TIFS = {"opg", "cls"}  # auctions: the simulator has no market sessions
_SIMPLE_CLASSES = {None, "", "simple"}


def positive_decimal(value: Any, name: str) -> Decimal:
    try:
        number = Decimal(str(value))
    except ArithmeticError as exc:
        raise SimError(422, 40010001, f"invalid {name}") from exc
    if not number.is_finite() or number <= 0:
        raise SimError(422, 40010001, f"{name} must be > 0")
    return number


def validate_order(body: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise SimError(422, 40010001, "request body must be a JSON object")
    symbol = body.get("symbol")
    if not isinstance(symbol, str) or not symbol:
        raise SimError(422, 40010001, "symbol is required")
    if body.get("notional") is not None:
        raise SimError(422, 40010001, "notional orders are not supported by the simulator")
    order_class = body.get("order_class")
    if order_class not in _SIMPLE_CLASSES or any(
        body.get(leg) is not None for leg in ("take_profit", "stop_loss", "legs")
    ):
        raise SimError(
            422,
            40010001,
            f"order_class {order_class or 'with legs'} is not supported by the simulator "
            "(simple orders only)",
        )
    if body.get("qty") is None:
        raise SimError(422, 40010001, "qty is required")
    side, kind, tif = body.get("side"), body.get("type"), body.get("time_in_force")
    if side not in _SIDES:
        raise SimError(422, 40010001, "invalid side")
    if kind not in _TYPES:
        raise SimError(422, 40010001, "invalid order type")
    if tif in _UNSUPPORTED_TIFS:
        raise SimError(422, 40010001, f"time_in_force {tif} is not supported by the simulator")
    if tif not in _TIFS:
        raise SimError(422, 40010001, "invalid time_in_force")
    limit_price = body.get("limit_price")
    stop_price = body.get("stop_price")
    if kind in ("limit", "stop_limit") and limit_price is None:
        raise SimError(422, 40010001, "limit_price is required for limit orders")
    if kind in ("stop", "stop_limit") and stop_price is None:
        raise SimError(422, 40010001, "stop_price is required for stop orders")
    client_order_id = body.get("client_order_id")
    if client_order_id is not None and (
        not isinstance(client_order_id, str) or len(client_order_id) > 128
    ):
        raise SimError(422, 40010001, "client_order_id must be a string of at most 128 characters")
    return {
        "symbol": symbol,
        "qty": positive_decimal(body["qty"], "qty"),
        "side": side,
        "type": kind,
        "time_in_force": tif,
        "limit_price": None
        if limit_price is None
        else positive_decimal(limit_price, "limit_price"),
        "stop_price": None if stop_price is None else positive_decimal(stop_price, "stop_price"),
        "client_order_id": client_order_id,
    }
