"""Shared wire types: decimal strings, enums, the error body."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer

_DECIMAL_RE = re.compile(r"^[0-9]{1,15}(\.[0-9]{1,9})?$")


def _parse_decimal(value: Any) -> Decimal:
    """Accept decimal strings (the contract) and JSON integers; never floats."""
    if isinstance(value, Decimal):
        text = format(value, "f")
    elif isinstance(value, bool):
        raise ValueError("must be a decimal string")
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise ValueError('must be a decimal string, e.g. "12.5"')
    if not _DECIMAL_RE.match(text):
        raise ValueError("must be a non-negative decimal string with at most 9 decimal places")
    try:
        return Decimal(text)
    except InvalidOperation as exc:  # pragma: no cover - the regex already guards this
        raise ValueError("not a decimal") from exc


def _positive(value: Decimal) -> Decimal:
    if value <= 0:
        raise ValueError("must be greater than zero")
    return value


def _format_decimal(value: Decimal) -> str:
    text = format(value.normalize(), "f") if value == value.to_integral() else format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


DecimalStr = Annotated[
    Decimal, BeforeValidator(_parse_decimal), PlainSerializer(_format_decimal, return_type=str)
]
PositiveDecimal = Annotated[
    Decimal,
    BeforeValidator(lambda v: _positive(_parse_decimal(v))),
    PlainSerializer(_format_decimal, return_type=str),
]


def format_decimal(value: Decimal) -> str:
    """Canonical decimal string: no exponent, no trailing zeros."""
    return _format_decimal(value)


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    STOP_LIMIT = "stop_limit"


class TimeInForce(StrEnum):
    DAY = "day"
    GTC = "gtc"
    IOC = "ioc"


class Role(StrEnum):
    MASTER = "master"
    FOLLOWER = "follower"
    ADMIN = "admin"


class BrokerName(StrEnum):
    SIM = "sim"
    ALPACA = "alpaca"
    BINANCE = "binance"
    KITE = "kite"


class Strict(BaseModel):
    """Base for request bodies: unknown fields are rejected, not dropped."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ErrorInfo(BaseModel):
    code: str
    message: str
    details: dict[str, Any] | None = None


class ErrorBody(BaseModel):
    error: ErrorInfo
