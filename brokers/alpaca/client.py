"""Alpaca Trading API v2 adapter over a pooled client (brokers.http: HTTP/2 where offered)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx

from brokers.alpaca import translate
from brokers.http import HttpApi, fixed_headers
from brokers.transport import transport_error
from replication.model import AccountSnapshot, BrokerOrder, Instrument, OrderRequest, Position


class AlpacaBroker:
    """Implements replication.ports.Broker for one Alpaca account."""

    def __init__(
        self,
        http: HttpApi,
        key_id: str,
        secret_key: str,
        data_http: HttpApi | None = None,
    ) -> None:
        self._http = http
        self._data_http = data_http or http
        self._headers = fixed_headers(
            http, {"APCA-API-KEY-ID": key_id, "APCA-API-SECRET-KEY": secret_key}
        )

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        lookup: bool = False,
        data_api: bool = False,
    ) -> Any:
        http = self._data_http if data_api else self._http
        try:
            response = await http.request(
                method, path, json=json, params=params, headers=self._headers
            )
        except asyncio.CancelledError:
            raise
        except httpx.HTTPError as exc:
            raise transport_error(exc) from exc
        if response.status_code == 204:
            return None
        try:
            body = response.json()
        except ValueError:
            body = response.text
        if response.is_success:
            return body
        raise translate.error_for(
            response.status_code, body, response.headers.get("retry-after"), lookup=lookup
        )

    async def place_order(self, request: OrderRequest) -> BrokerOrder:
        data = await self._request("POST", "/v2/orders", json=translate.order_request_body(request))
        return translate.parse_order(data)

    async def get_order_by_client_id(
        self, client_order_id: str, symbol: str | None = None
    ) -> BrokerOrder:
        data = await self._request(
            "GET",
            "/v2/orders:by_client_order_id",
            params={"client_order_id": client_order_id},
            lookup=True,
        )
        return translate.parse_order(data)

    async def cancel_order(self, broker_order_id: str, symbol: str | None = None) -> None:
        await self._request("DELETE", f"/v2/orders/{broker_order_id}")

    async def replace_order(
        self,
        broker_order_id: str,
        client_order_id: str,
        qty: Decimal,
        limit_price: Decimal | None,
        stop_price: Decimal | None,
        symbol: str | None = None,
    ) -> BrokerOrder:
        body = translate.replace_request_body(client_order_id, qty, limit_price, stop_price)
        data = await self._request("PATCH", f"/v2/orders/{broker_order_id}", json=body)
        return translate.parse_order(data)

    async def list_orders(self, after: datetime | None = None) -> list[BrokerOrder]:
        params = {"status": "all", "limit": "500", "direction": "asc"}
        if after is not None:
            params["after"] = after.isoformat()
        data = await self._request("GET", "/v2/orders", params=params)
        return [translate.parse_order(item) for item in data]

    async def positions(self) -> list[Position]:
        data = await self._request("GET", "/v2/positions")
        return [translate.parse_position(item) for item in data]

    async def account(self) -> AccountSnapshot:
        return translate.parse_account(await self._request("GET", "/v2/account"))

    async def instrument(self, symbol: str) -> Instrument:
        return translate.parse_asset(await self._request("GET", f"/v2/assets/{symbol}"))

    async def last_price(self, symbol: str) -> Decimal:
        data = await self._request("GET", f"/v2/stocks/{symbol}/trades/latest", data_api=True)
        return translate.parse_latest_trade(data)
