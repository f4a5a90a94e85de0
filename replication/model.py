"""Domain values of the replication core. Plain frozen dataclasses, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from replication.state import LegStatus
from schemas.common import OrderType, Side, TimeInForce
from schemas.copy_settings import Caps, Filters, FixedSizing, MultiplierSizing

OPEN_ACTION = "open"


@dataclass(frozen=True)
class FollowerTarget:
    """One active subscription of a follower account to a master, as the planner sees it."""

    subscription_id: str
    follower_id: str
    account_id: str
    broker: str
    sizing: FixedSizing | MultiplierSizing
    caps: Caps
    filters: Filters
    paused: bool = False
    account_halted: bool = False
    qty_step: Decimal = Decimal("1")


@dataclass(frozen=True)
class PlannedLeg:
    leg_id: str
    order_id: str
    subscription_id: str
    follower_id: str
    account_id: str
    broker: str
    action: str
    client_order_id: str
    symbol: str
    side: Side
    qty: Decimal | None
    type: OrderType
    time_in_force: TimeInForce
    limit_price: Decimal | None
    stop_price: Decimal | None
    status: LegStatus
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OrderRequest:
    """What an adapter sends to a broker for one leg."""

    client_order_id: str
    symbol: str
    side: Side
    qty: Decimal
    type: OrderType
    time_in_force: TimeInForce
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None


@dataclass(frozen=True)
class BrokerOrder:
    """An order as a broker reports it, already mapped to our leg status."""

    broker_order_id: str
    client_order_id: str
    status: LegStatus
    broker_status: str
    filled_qty: Decimal = Decimal("0")
    filled_avg_price: Decimal | None = None
    reason: str | None = None


@dataclass(frozen=True)
class AccountSnapshot:
    account_id: str
    equity: Decimal
    cash: Decimal
    currency: str = "USD"


@dataclass(frozen=True)
class Position:
    symbol: str
    qty: Decimal
    avg_entry_price: Decimal
