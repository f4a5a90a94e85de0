"""Binance Spot REST adapter: HMAC-SHA256 signed requests over a pooled client (brokers.http)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx

from brokers.binance import constants as c
from brokers.binance import translate
from brokers.http import HttpApi
from brokers.transport import transport_error
from replication.errors import Fatal
from replication.model import AccountSnapshot, BrokerOrder, Instrument, OrderRequest, Position


class BinanceBroker:
    """Implements replication.ports.Broker for one Binance Spot account."""

    def __init__(
        self,
        http: HttpApi,
        api_key: str,
        secret_key: str,
        *,
        quote_asset: str = c.DEFAULT_QUOTE_ASSET,
        watch_symbols: tuple[str, ...] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._http = http
        self._api_key = api_key
        self._secret = secret_key
        self._quote = quote_asset
        self._watch = watch_symbols
        self._clock = clock

    async def _request(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None = None,
        *,
        signed: bool = True,
        lookup: bool = False,
    ) -> Any:
        params = dict(params or {})
        if signed:
            params["timestamp"] = str(int(self._clock() * 1000))
            params["recvWindow"] = str(c.RECV_WINDOW_MS)
            query = translate.sign(params, self._secret)
        else:
            query = "&".join(f"{k}={v}" for k, v in params.items())
        url = f"{path}?{query}" if query else path
        try:
            response = await self._http.request(
                method, url, headers={"X-MBX-APIKEY": self._api_key}
            )
        except asyncio.CancelledError:
            raise
        except httpx.HTTPError as exc:
            raise transport_error(exc) from exc
        try:
            body = response.json()
        except ValueError:
            body = response.text
        if response.is_success:
            return body
        raise translate.error_for(
            response.status_code, body, response.headers.get("retry-after"), lookup=lookup
        )

    def request_weight(self, operation: str) -> int:
        """The IP request weight `operation` spends (list_orders: once per watched symbol)."""
        return c.operation_weight(operation, len(self._watch))

    @staticmethod
    def _symbol(symbol: str | None) -> str:
        if not symbol:
            raise Fatal("Binance needs the symbol for this call", code="symbol_required")
        return symbol

    async def place_order(self, request: OrderRequest) -> BrokerOrder:
        data = await self._request("POST", "/api/v3/order", translate.order_params(request))
        return translate.parse_order(data)

    async def get_order_by_client_id(
        self, client_order_id: str, symbol: str | None = None
    ) -> BrokerOrder:
        data = await self._request(
            "GET",
            "/api/v3/order",
            {"symbol": self._symbol(symbol), "origClientOrderId": client_order_id},
            lookup=True,
        )
        return translate.parse_order(data)

    async def cancel_order(self, broker_order_id: str, symbol: str | None = None) -> None:
        await self._request(
            "DELETE", "/api/v3/order", {"symbol": self._symbol(symbol), "orderId": broker_order_id}
        )

    async def replace_order(
        self,
        broker_order_id: str,
        client_order_id: str,
        qty: Decimal,
        limit_price: Decimal | None,
        stop_price: Decimal | None,
        symbol: str | None = None,
    ) -> BrokerOrder:
        current = await self._request(
            "GET", "/api/v3/order", {"symbol": self._symbol(symbol), "orderId": broker_order_id}
        )
        params = translate.replace_params(current, client_order_id, qty, limit_price, stop_price)
        data = await self._request("POST", "/api/v3/order/cancelReplace", params)
        return translate.parse_order(data["newOrderResponse"])

    async def list_orders(self, after: datetime | None = None) -> list[BrokerOrder]:
        """All orders of the watched symbols since `after` (Binance lists per symbol)."""
        orders: list[BrokerOrder] = []
        for symbol in self._watch:
            params = {"symbol": symbol, "limit": "1000"}
            if after is not None:
                params["startTime"] = str(int(after.timestamp() * 1000))
            data = await self._request("GET", "/api/v3/allOrders", params)
            orders.extend(translate.parse_order(item) for item in data)
        return orders

    async def positions(self) -> list[Position]:
        data = await self._request("GET", "/api/v3/account")
        return translate.parse_positions(data, self._quote)

    async def account(self) -> AccountSnapshot:
        account, prices = await asyncio.gather(
            self._request("GET", "/api/v3/account"),
            self._request("GET", "/api/v3/ticker/price", signed=False),
        )
        by_symbol = {p["symbol"]: Decimal(str(p["price"])) for p in prices}
        return translate.parse_account(account, by_symbol, self._quote)

    async def instrument(self, symbol: str) -> Instrument:
        data = await self._request("GET", "/api/v3/exchangeInfo", {"symbol": symbol}, signed=False)
        return translate.parse_instrument(data, symbol)

    async def last_price(self, symbol: str) -> Decimal:
        data = await self._request("GET", "/api/v3/ticker/price", {"symbol": symbol}, signed=False)
        return Decimal(str(data["price"]))
