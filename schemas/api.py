"""Bodies of the public ingest API (API.md). Requests reject unknown fields."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from schemas.common import (
    BrokerName,
    DecimalStr,
    OrderType,
    PositiveDecimal,
    Side,
    Strict,
    StrictBool,
    Text,
    TimeInForce,
    refuse_controls,
)
from schemas.copy_settings import Caps, Filters, Sizing

_EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{2,63}$")

# Validation error types that carry their own machine-readable code to the client.
CUSTOM_ERROR_CODES = frozenset(
    {
        "empty_replace",
        "missing_limit_price",
        "missing_stop_price",
        "unexpected_price",
        "invalid_email",
        "control_character",
    }
)


# The email rule as the OpenAPI document states it (control characters excluded too).
EMAIL_PATTERN = (
    "^[^@\\s\u0000-\u001f\u007f-\u009f]{1,64}@[^@\\s\u0000-\u001f\u007f-\u009f]{1,120}"
    "\\.[^@\\s\u0000-\u001f\u007f-\u009f]{2,63}$"
)


class RegisterRequest(Strict):
    email: Annotated[Text, Field(max_length=254, json_schema_extra={"pattern": EMAIL_PATTERN})]
    password: Annotated[Text, Field(min_length=8, max_length=256)]
    role: Literal["master", "follower"]

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        value = value.strip().lower()
        if not _EMAIL_RE.match(value):
            raise PydanticCustomError("invalid_email", "not a valid email address")
        return value


class RegisterResponse(BaseModel):
    user_id: str


class TokenRequest(Strict):
    email: Annotated[Text, Field(max_length=254)]
    password: Annotated[Text, Field(max_length=256)]


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - a token type, not a secret
    expires_in: int
    # Additive (sessions): an opaque, single-use refresh token for POST /v1/auth/refresh.
    refresh_token: str
    refresh_expires_in: int


class RefreshRequest(Strict):
    """POST /v1/auth/refresh and POST /v1/auth/logout."""

    refresh_token: Annotated[Text, Field(min_length=1, max_length=256)]


class WsToken(BaseModel):
    token: str
    expires_in: int


class AccountCreate(Strict):
    broker: BrokerName
    label: Annotated[Text, Field(min_length=1, max_length=100)]
    credentials: dict[str, Any]

    @field_validator("credentials")
    @classmethod
    def _credentials(cls, value: dict[str, Any]) -> dict[str, Any]:
        refuse_controls(value)
        return value


class AccountPatch(Strict):
    """PATCH /v1/accounts/{id}: new credentials are checked and verified at the broker."""

    label: Annotated[Text, Field(min_length=1, max_length=100)] | None = None
    credentials: dict[str, Any] | None = None  # control characters: 422 invalid_credentials


class AccountOut(BaseModel):
    account_id: str
    broker: str
    label: str
    halted: bool = False
    created_at: datetime | None = None
    # DELETE ?positions=close answered 202: its copies are being closed; it disappears once flat.
    deleting: bool = False


class AccountPositions(StrEnum):
    """What deleting an account does with the positions copied into it (only `close`)."""

    CLOSE = "close"


class SubscriptionCreate(Strict):
    master_id: UUID
    account_id: UUID
    sizing: Sizing
    caps: Caps = Caps()
    filters: Filters = Filters()
    paused: StrictBool = False
    # A copy filled before the master's broker refused the master's own order: closed, or kept.
    on_master_rejected: Literal["close", "keep"] = "close"
    # Required unless the master's copy access is "open" (API.md v1 additions).
    invite_code: Annotated[Text, Field(min_length=1, max_length=64)] | None = None


class SubscriptionPatch(Strict):
    sizing: Sizing | None = None
    caps: Caps | None = None
    filters: Filters | None = None
    paused: StrictBool | None = None
    on_master_rejected: Literal["close", "keep"] | None = None


class SubscriptionOut(BaseModel):
    subscription_id: str
    master_id: str
    account_id: str
    sizing: dict[str, Any]
    caps: dict[str, Any]
    filters: dict[str, Any]
    paused: bool
    created_at: datetime
    updated_at: datetime
    on_master_rejected: str = "close"
    # Set once the follower ended it with positions=follow_exits|close: nothing new opens, the
    # master's exits are still copied until the copied positions are flat, then it is removed.
    ending_at: datetime | None = None


class PositionsChoice(StrEnum):
    """What ending a subscription does with the positions it copied."""

    FOLLOW_EXITS = "follow_exits"
    CLOSE = "close"
    KEEP = "keep"


class HaltRequest(Strict):
    """Optional body of the halt routes: `flatten` also cancels resting copies and closes the
    copied positions in the halt's scope (exactly once, through the leg machinery)."""

    flatten: StrictBool = False


_CLIENT_ORDER_ID = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
_SYMBOL = Annotated[str, Field(min_length=1, max_length=16, pattern=r"^[A-Z0-9][A-Z0-9./-]*$")]


class OrderCreate(Strict):
    client_order_id: _CLIENT_ORDER_ID
    account_id: UUID
    symbol: _SYMBOL
    side: Side
    qty: PositiveDecimal
    type: OrderType
    limit_price: PositiveDecimal | None = None
    stop_price: PositiveDecimal | None = None
    time_in_force: TimeInForce

    @model_validator(mode="after")
    def _prices(self) -> OrderCreate:
        needs_limit = self.type in (OrderType.LIMIT, OrderType.STOP_LIMIT)
        needs_stop = self.type in (OrderType.STOP, OrderType.STOP_LIMIT)
        if needs_limit and self.limit_price is None:
            raise PydanticCustomError(
                "missing_limit_price",
                "a {type} order needs limit_price",
                {"type": self.type.value},
            )
        if needs_stop and self.stop_price is None:
            raise PydanticCustomError(
                "missing_stop_price", "a {type} order needs stop_price", {"type": self.type.value}
            )
        if (not needs_limit and self.limit_price is not None) or (
            not needs_stop and self.stop_price is not None
        ):
            raise PydanticCustomError(
                "unexpected_price", "a {type} order takes no such price", {"type": self.type.value}
            )
        return self


class OrderReplace(Strict):
    """PATCH /v1/orders/{id}: new quantity and/or prices; open legs follow, same sizing."""

    qty: PositiveDecimal | None = None
    limit_price: PositiveDecimal | None = None
    stop_price: PositiveDecimal | None = None

    @model_validator(mode="after")
    def _something(self) -> OrderReplace:
        if self.qty is None and self.limit_price is None and self.stop_price is None:
            raise PydanticCustomError("empty_replace", "give qty, limit_price or stop_price")
        return self


class OrderAccepted(BaseModel):
    order_id: str
    client_order_id: str
    status: str


class LegCounts(BaseModel):
    total: int
    by_status: dict[str, int]


class MasterExecution(BaseModel):
    """The master's own order at the master's broker."""

    status: str
    reason: str | None
    broker_order_id: str | None
    filled_qty: DecimalStr
    filled_avg_price: DecimalStr | None


class CancelAccepted(BaseModel):
    order_id: str
    cancel_requested: bool


class HaltState(BaseModel):
    scope: str
    halted: bool
    flatten_request_id: str | None = None


class OrderOut(BaseModel):
    order_id: str
    client_order_id: str
    account_id: str
    symbol: str
    side: Side
    qty: DecimalStr
    type: OrderType
    limit_price: DecimalStr | None
    stop_price: DecimalStr | None
    time_in_force: TimeInForce
    status: str
    created_at: datetime
    legs: LegCounts
    fanout_ms: float | None
    master_execution: MasterExecution | None = None
    cancel_requested: bool = False
    # Set when the order's message ran out of delivery attempts; status is then "dead_lettered".
    dead_lettered_at: datetime | None = None


class CopyOut(BaseModel):
    leg_id: str
    order_id: str
    master_id: str
    account_id: str
    symbol: str
    side: Side
    qty: DecimalStr | None
    status: str
    reason: str | None
    details: dict[str, Any]
    client_order_id: str
    broker_order_id: str | None
    filled_qty: DecimalStr
    filled_avg_price: DecimalStr | None
    created_at: datetime
    updated_at: datetime
