"""Kite Connect v3 adapter: form-encoded orders, `tag` as our client order id.

Kite has no lookup by tag and does not reject a repeated tag, so the lookup is a filter over
the day's orders (GET /orders); the sweeper's look-up-before-resend is then the only guard
against duplicates, and its grace period matters most here.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx

from brokers.http import HttpApi
from brokers.kite import constants as c
from brokers.kite import translate
from brokers.transport import transport_error
from replication.errors import NotFound, Unknown
from replication.model import (
    AccountSnapshot,
    BrokerOrder,
    Instrument,
    OrderRequest,
    Position,
)
from schemas.common import format_decimal


class KiteBroker:
    """Implements replication.ports.Broker for one Kite Connect account."""

    def __init__(
        self,
        http: HttpApi,
        api_key: str,
        access_token: str,
        *,
        exchange: str = c.DEFAULT_EXCHANGE,
        product: str = c.DEFAULT_PRODUCT,
    ) -> None:
        self._http = http
        self._headers = {
            "Authorization": f"token {api_key}:{access_token}",
            "X-Kite-Version": c.API_VERSION,
        }
        self._exchange = exchange
        self._product = product

    async def _request(
        self,
        method: str,
        path: str,
        *,
        form: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        try:
            response = await self._http.request(
                method, path, data=form, params=params, headers=self._headers
            )
        except asyncio.CancelledError:
            raise
        except httpx.HTTPError as exc:
            raise transport_error(exc) from exc
        try:
            body = response.json()
        except ValueError:
            body = response.text
        if response.is_success and isinstance(body, dict) and body.get("status") == "success":
            return body.get("data")
        raise translate.error_for(response.status_code, body, response.headers.get("retry-after"))

    async def _order(self, order_id: str) -> BrokerOrder:
        history = await self._request("GET", f"/orders/{order_id}")
        if not history:
            raise Unknown(f"kite has no history for order {order_id}")
        return translate.parse_order(history[-1])  # the last entry is the current state

    async def place_order(self, request: OrderRequest) -> BrokerOrder:
        data = await self._request(
            "POST",
            "/orders/regular",
            form=translate.order_form(request, self._exchange, self._product),
        )
        try:
            return await self._order(str(data["order_id"]))
        except (Unknown, NotFound):
            # Placed (Kite answered with an order id) but its state is not readable yet.
            return BrokerOrder(
                str(data["order_id"]),
                request.client_order_id,
                c.STATUS_MAP["OPEN"],
                "OPEN",
            )

    async def get_order_by_client_id(
        self, client_order_id: str, symbol: str | None = None
    ) -> BrokerOrder:
        orders = await self._request("GET", "/orders")
        mine = [o for o in orders if o.get("tag") == client_order_id]
        if not mine:
            raise NotFound(f"no order tagged {client_order_id} today")
        return translate.parse_order(mine[-1])

    async def cancel_order(self, broker_order_id: str, symbol: str | None = None) -> None:
        await self._request("DELETE", f"/orders/regular/{broker_order_id}")

    async def replace_order(
        self,
        broker_order_id: str,
        client_order_id: str,
        qty: Decimal,
        limit_price: Decimal | None,
        stop_price: Decimal | None,
        symbol: str | None = None,
    ) -> BrokerOrder:
        """Kite modifies in place (PUT): the order keeps its id and its original tag."""
        form = {"quantity": format_decimal(qty)}
        if limit_price is not None:
            form["price"] = format_decimal(limit_price)
        if stop_price is not None:
            form["trigger_price"] = format_decimal(stop_price)
        await self._request("PUT", f"/orders/regular/{broker_order_id}", form=form)
        return await self._order(broker_order_id)

    async def list_orders(self, after: datetime | None = None) -> list[BrokerOrder]:
        orders = await self._request("GET", "/orders")
        return [translate.parse_order(o) for o in orders]

    async def positions(self) -> list[Position]:
        return translate.parse_positions(await self._request("GET", "/portfolio/positions"))

    async def account(self) -> AccountSnapshot:
        return translate.parse_margins(await self._request("GET", "/user/margins/equity"))

    async def instrument(self, symbol: str) -> Instrument:
        # Cash equities trade in whole shares (lot size 1).
        return Instrument(symbol, qty_step=Decimal(1), min_qty=Decimal(1))

    async def last_price(self, symbol: str) -> Decimal:
        key = f"{self._exchange}:{symbol}"
        data = await self._request("GET", "/quote/ltp", params={"i": key})
        return Decimal(str(data[key]["last_price"]))
