"""Messages on NATS: the master order on JetStream and the events on core NATS."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, PlainSerializer

from schemas.common import DecimalStr, OrderType, Side, TimeInForce

ORDERS_STREAM = "ORDERS"
ORDERS_SUBJECT_PREFIX = "orders"
# Shards of one master order's fan-out, shared by every replicator (a work queue).
SHARDS_STREAM = "ORDER_SHARDS"
SHARDS_SUBJECT = "shards.orders"

# Internal messages carry broker numbers exactly as they came (signed, any precision).
ExactDecimal = Annotated[Decimal, PlainSerializer(str, return_type=str)]


def order_subject(master_id: str) -> str:
    return f"{ORDERS_SUBJECT_PREFIX}.{master_id}"


def leg_event_subject(follower_id: str) -> str:
    """One follower's leg events, one per message (what workers before batching published;
    the gateway still listens to it)."""
    return f"events.legs.{follower_id}"


# Leg events, many followers' at once: a JSON array of LegEvent, one message per settled batch
# (not matched by events.legs.*, which needs a fourth token).
LEG_EVENTS_SUBJECT = "events.legs"


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


class InstrumentRules(BaseModel):
    """A symbol's trading rules at one broker (replication.model.Instrument on the wire)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    qty_step: ExactDecimal
    min_qty: ExactDecimal
    min_notional: ExactDecimal


class PlanContext(BaseModel):
    """The master's side of one order's plan, fixed the first time the order is planned so that
    every shard (on any worker, on any redelivery) sizes against the same facts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    planned_at: datetime
    trading_day: date
    reference_price: ExactDecimal | None = None
    price_source: str = "unavailable"
    master_equity: ExactDecimal | None = None
    # Signed, in the order's symbol, before this order; None when it could not be read.
    master_position: ExactDecimal | None = None
    # True when the master has a broker account but its position could not be read: without it
    # an exit cannot be told from an entry, so every follower leg is skipped.
    master_position_unavailable: bool = False
    global_halt: bool = False
    master_halted: bool = False
    # The order's symbol at each followers' broker, by broker name.
    instruments: dict[str, InstrumentRules] = {}


class OrderPlan(BaseModel):
    """What is stored on the order: the context and the partition of follower accounts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    context: PlanContext
    shards: list[list[str]]
    # The followers' version the partition was made from (services.worker.replicator).
    targets_version: int | None = None


class ShardMessage(BaseModel):
    """One shard of a master order's fan-out, published with Nats-Msg-Id = order_id:shard."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = 1
    order: OrderMessage
    shard: int
    shards: int  # how many the order was split into
    context: PlanContext
    account_ids: list[str]
    targets_version: int | None = None
    # copy_on = accepted: the master's broker refused the master's order; copies are skipped.
    master_refused: bool = False


def shard_message_id(order_id: str, shard: int) -> str:
    return f"{order_id}:{shard}"


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


__all__ = [
    "Decimal",
    "LegEvent",
    "OrderEvent",
    "OrderMessage",
    "OrderPlan",
    "PlanContext",
    "ShardMessage",
]
