"""The one Broker contract every adapter implements (DESIGN §7)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Protocol

from replication.model import AccountSnapshot, BrokerOrder, Instrument, OrderRequest, Position


class Broker(Protocol):
    async def place_order(self, request: OrderRequest) -> BrokerOrder:
        """Place one order. Raises a replication.errors.BrokerError subclass on failure."""
        ...

    async def get_order_by_client_id(
        self, client_order_id: str, symbol: str | None = None
    ) -> BrokerOrder:
        """Look an order up by our client order id; raises NotFound when there is none.
        (Binance needs the symbol; Kite has no lookup and filters the day's orders by tag.)"""
        ...

    async def cancel_order(self, broker_order_id: str, symbol: str | None = None) -> None: ...

    async def replace_order(
        self,
        broker_order_id: str,
        client_order_id: str,
        qty: Decimal,
        limit_price: Decimal | None,
        stop_price: Decimal | None,
        symbol: str | None = None,
    ) -> BrokerOrder:
        """Replace an open order (new quantity/prices); the broker answers with the new order."""
        ...

    async def list_orders(self, after: datetime | None = None) -> list[BrokerOrder]:
        """Orders created after `after`, oldest first (for the broker poller)."""
        ...

    async def positions(self) -> list[Position]: ...

    async def account(self) -> AccountSnapshot: ...

    async def instrument(self, symbol: str) -> Instrument:
        """Quantity step and minimums of a symbol at this broker."""
        ...

    async def last_price(self, symbol: str) -> Decimal: ...
