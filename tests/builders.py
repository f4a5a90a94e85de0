"""Domain values for tests: a master order message and a planned leg with plain defaults (a
market buy of 1 AAPL, fresh ids); a test names only what it is about."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from replication.model import PlannedLeg
from replication.state import LegStatus
from schemas.common import OrderType, Side, TimeInForce
from schemas.messages import OrderMessage


def order_message(**fields: Any) -> OrderMessage:
    values: dict[str, Any] = {
        "order_id": str(uuid.uuid4()),
        "master_id": str(uuid.uuid4()),
        "account_id": str(uuid.uuid4()),
        "client_order_id": uuid.uuid4().hex,
        "symbol": "AAPL",
        "side": Side.BUY,
        "qty": Decimal(1),
        "type": OrderType.MARKET,
        "time_in_force": TimeInForce.DAY,
        "created_at": datetime.now(UTC),
    }
    return OrderMessage(**(values | fields))


def planned_leg(**fields: Any) -> PlannedLeg:
    values: dict[str, Any] = {
        "leg_id": str(uuid.uuid4()),
        "order_id": str(uuid.uuid4()),
        "subscription_id": str(uuid.uuid4()),
        "follower_id": str(uuid.uuid4()),
        "account_id": str(uuid.uuid4()),
        "broker": "sim",
        "action": "open",
        "client_order_id": uuid.uuid4().hex[:20],
        "symbol": "AAPL",
        "side": Side.BUY,
        "qty": Decimal(1),
        "type": OrderType.MARKET,
        "time_in_force": TimeInForce.DAY,
        "limit_price": None,
        "stop_price": None,
        "status": LegStatus.SUBMITTING,
    }
    return PlannedLeg(**(values | fields))
