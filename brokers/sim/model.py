"""The simulator's data: accounts, orders, positions, assets, fault settings and the
Alpaca-style error, plus the wire formatting helpers they share. No I/O, no behaviour beyond
spelling themselves the way Alpaca's schemas do."""

from __future__ import annotations

import functools
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

ASSET_NAMESPACE = uuid.UUID("0b5c4a55-7a3e-4e44-9a6e-6b8b0e6a1d42")


@functools.lru_cache(maxsize=4096)  # any symbol is accepted: the cache stays bounded
def asset_id(symbol: str) -> str:
    """The asset's id, the same for a symbol on every answer (a name-based UUID)."""
    return str(uuid.uuid5(ASSET_NAMESPACE, symbol))


def now() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def dec(value: Decimal | None) -> str | None:
    if value is None:
        return None
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


@dataclass
class Faults:
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    error_rate: float = 0.0
    timeout_rate: float = 0.0
    accept_then_timeout_rate: float = 0.0
    dedup_client_order_id: bool = True
    rate_limit_per_min: int | None = None
    partial_fill_ratio: float | None = None  # market orders fill only this fraction, then rest
    ip_rate_limit_per_s: int | None = None  # all requests to the simulator, like a per-IP limit
    reject_orders: bool = False  # refuse every new order (403), as a broker refusing it would
    no_liquidity: bool = False  # nothing fills, whatever the price: orders rest (IOCs cancel)
    throttle_orders: bool = False  # new orders answered 429 (Retry-After 60); reads are served

    def updated(self, changes: dict[str, Any]) -> Faults:
        data = {**self.__dict__, **changes}
        return Faults(**data)


@dataclass
class SimPosition:
    qty: Decimal = Decimal("0")
    avg_entry_price: Decimal = Decimal("0")


@dataclass
class SimOrder:
    id: str
    account_id: str
    client_order_id: str
    symbol: str
    side: str
    qty: Decimal
    type: str
    time_in_force: str
    limit_price: Decimal | None
    stop_price: Decimal | None
    created_at: datetime
    status: str = "new"
    updated_at: datetime | None = None
    filled_at: datetime | None = None
    canceled_at: datetime | None = None
    expired_at: datetime | None = None
    replaced_at: datetime | None = None
    replaced_by: str | None = None
    replaces: str | None = None
    filled_qty: Decimal = Decimal("0")
    filled_avg_price: Decimal | None = None
    extended_hours: bool = False
    received_at: float = 0.0  # wall clock when the request arrived (benchmarks)

    def wire(self) -> dict[str, Any]:
        """The order exactly as Alpaca's Order schema spells it."""
        return {
            "id": self.id,
            "client_order_id": self.client_order_id,
            "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.updated_at or self.created_at),
            "submitted_at": rfc3339(self.created_at),
            "filled_at": rfc3339(self.filled_at),
            "expired_at": rfc3339(self.expired_at),
            "canceled_at": rfc3339(self.canceled_at),
            "failed_at": None,
            "replaced_at": rfc3339(self.replaced_at),
            "replaced_by": self.replaced_by,
            "replaces": self.replaces,
            "asset_id": asset_id(self.symbol),
            "symbol": self.symbol,
            "asset_class": "us_equity",
            "notional": None,
            "qty": dec(self.qty),
            "filled_qty": dec(self.filled_qty),
            "filled_avg_price": dec(self.filled_avg_price),
            "order_class": "",
            "order_type": self.type,
            "type": self.type,
            "side": self.side,
            "time_in_force": self.time_in_force,
            "limit_price": dec(self.limit_price),
            "stop_price": dec(self.stop_price),
            "status": self.status,
            "extended_hours": self.extended_hours,
            "legs": None,
            "trail_percent": None,
            "trail_price": None,
            "hwm": None,
            "position_intent": ("buy_to_open" if self.side == "buy" else "sell_to_close"),
        }


@dataclass
class SimAccount:
    account_id: str
    key_id: str
    secret_key: str
    cash: Decimal
    created_at: datetime
    faults: Faults | None = None
    orders: dict[str, SimOrder] = field(default_factory=dict)
    by_client_order_id: dict[str, SimOrder] = field(default_factory=dict)
    positions: dict[str, SimPosition] = field(default_factory=dict)
    request_times: deque[float] = field(default_factory=deque)
    orders_received: int = 0
    position_reads: int = 0
    last_equity: Decimal | None = None  # equity at the start of the simulated day


class SimError(Exception):
    """An Alpaca-style error answer: HTTP status plus {"code", "message"}."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class SimAsset:
    symbol: str
    fractionable: bool = False
    min_order_size: Decimal | None = None
    min_trade_increment: Decimal | None = None
    tradable: bool = True

    def wire(self) -> dict[str, Any]:
        """The asset as Alpaca's Assets schema spells it (crypto-style minimums when set)."""
        body: dict[str, Any] = {
            "id": asset_id(self.symbol),
            "class": "us_equity",
            "exchange": "NASDAQ",
            "symbol": self.symbol,
            "name": f"{self.symbol} (simulated)",
            "status": "active",
            "tradable": self.tradable,
            "marginable": True,
            "shortable": True,
            "easy_to_borrow": True,
            "fractionable": self.fractionable,
            "maintenance_margin_requirement": 30,
            "attributes": [],
        }
        if self.min_order_size is not None:
            body["min_order_size"] = dec(self.min_order_size)
        if self.min_trade_increment is not None:
            body["min_trade_increment"] = dec(self.min_trade_increment)
        return body
