"""Shared wire types: decimal strings, enums, the error body."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)
from pydantic import Strict as StrictMark
from pydantic_core import PydanticCustomError

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
        text = value  # no stripping: " 1 " is not a decimal string
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


# What the OpenAPI document promises a decimal input looks like (a client generating from it, a
# fuzzer included, only ever produces accepted values); answers are plain strings.
_DECIMAL_IN = WithJsonSchema(
    {
        "anyOf": [
            {"type": "string", "pattern": r"^[0-9]{1,15}(\.[0-9]{1,9})?$"},
            {"type": "integer", "minimum": 0, "maximum": 999_999_999_999_999},
        ]
    },
    mode="validation",
)
_POSITIVE_IN = WithJsonSchema(
    {
        "anyOf": [
            {
                "type": "string",
                "pattern": r"^([1-9][0-9]{0,14}(\.[0-9]{1,9})?|0\.[0-9]{0,8}[1-9])$",
            },
            {"type": "integer", "minimum": 1, "maximum": 999_999_999_999_999},
        ]
    },
    mode="validation",
)
DecimalStr = Annotated[
    Decimal,
    BeforeValidator(_parse_decimal),
    PlainSerializer(_format_decimal, return_type=str),
    _DECIMAL_IN,
]
PositiveDecimal = Annotated[
    Decimal,
    BeforeValidator(lambda v: _positive(_parse_decimal(v))),
    PlainSerializer(_format_decimal, return_type=str),
    _POSITIVE_IN,
]


_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _no_controls(value: str) -> str:
    """NUL and other control characters are refused in every string field (PostgreSQL refuses
    NUL; the others only make trouble in logs, CSVs and dashboards)."""
    if _CONTROL_RE.search(value):
        raise PydanticCustomError("control_character", "control characters are not allowed")
    return value


def refuse_controls(value: Any) -> Any:
    """Walk a free-form JSON value (credentials) and refuse control characters anywhere."""
    if isinstance(value, str):
        _no_controls(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            refuse_controls(key)
            refuse_controls(item)
    elif isinstance(value, list):
        for item in value:
            refuse_controls(item)
    return value


TEXT_PATTERN = "^[^\u0000-\u001f\u007f-\u009f\u2028\u2029]*$"
Text = Annotated[
    str, AfterValidator(_no_controls), Field(json_schema_extra={"pattern": TEXT_PATTERN})
]
StrictBool = Annotated[bool, StrictMark()]
StrictInt = Annotated[int, StrictMark()]


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


_RFC3339_START = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]")


def _rfc3339_text(value: object) -> object:
    """Only an RFC 3339 text is a time here: a bare number is not read as a Unix epoch."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _RFC3339_START.match(value):
        raise ValueError("expected an RFC 3339 date-time, e.g. 2026-11-30T00:00:00Z")
    return value


Rfc3339 = Annotated[datetime, BeforeValidator(_rfc3339_text)]
