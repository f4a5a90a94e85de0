"""Messages on NATS: the master order on JetStream and the events on core NATS."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict

from schemas.common import DecimalStr, OrderType, Side, TimeInForce

ORDERS_STREAM = "ORDERS"
ORDERS_SUBJECT_PREFIX = "orders"


def order_subject(master_id: str) -> str:
    return f"{ORDERS_SUBJECT_PREFIX}.{master_id}"


def leg_event_subject(follower_id: str) -> str:
    return f"events.legs.{follower_id}"


def order_event_subject(master_id: str) -> str:
    return f"events.orders.{master_id}"


# Wakes the sweepers at once (e.g. a master asked to cancel) instead of at their next tick.
SWEEP_NOW_SUBJECT = "control.sweep"


class OrderMessage(BaseModel):
    """One master order, published once per order (not per leg) with Nats-Msg-Id = order_id."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = 1
    order_id: str
    master_id: str
    account_id: str
    client_order_id: str
    symbol: str
    side: Side
    qty: DecimalStr
    type: OrderType
    limit_price: DecimalStr | None = None
    stop_price: DecimalStr | None = None
    time_in_force: TimeInForce
    created_at: datetime
    # "broker": the master placed it directly at the broker (seen by the poller); it is not
    # placed again, and the master's position before it excludes its fills.
    origin: Literal["api", "broker"] = "api"
    broker_client_order_id: str | None = None


class LegEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    type: Literal["leg.updated"] = "leg.updated"
    leg_id: str
    order_id: str
    master_id: str
    follower_id: str
    account_id: str
    symbol: str
    side: Side
    qty: DecimalStr | None
    status: str
    reason: str | None
    client_order_id: str
    broker_order_id: str | None
    latency_ms: float | None
    updated_at: datetime


class OrderEvent(BaseModel):
    """Fan-out progress of one master order: aggregates only, never follower identities."""

    model_config = ConfigDict(frozen=True)

    type: Literal["order.updated"] = "order.updated"
    order_id: str
    master_id: str
    status: str
    legs_total: int
    by_status: dict[str, int]
    fanout_ms: float | None
    updated_at: datetime


__all__ = ["Decimal", "LegEvent", "OrderEvent", "OrderMessage"]
