"""A typed async client of copytrade's public API (API.md) for masters and followers.

One file on httpx, importing nothing of the service, so an integrator can vendor it:

    async with CopytradeClient("http://127.0.0.1:8000") as ct:
        await ct.sign_in("follower@example.com", "correct horse")
        async for copy in ct.iter_copies(since=datetime(2026, 1, 1, tzinfo=UTC)):
            print(copy["symbol"], copy["status"])
        print((await ct.pnl())["totals"])

Errors come back as CopytradeError(status, code, message, details) from the API's
`{"error": {...}}` body. Decimal values are strings on the wire and stay strings here.

Sessions: `sign_in` keeps the refresh token too; a call answered 401 `token_expired` refreshes
the session once (POST /v1/auth/refresh, one refresh at a time per client: refresh tokens are
single use, and a spent one presented again ends the whole session) and is sent again.
`logout` ends the session.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, TypedDict, cast

import httpx

Role = Literal["master", "follower"]
Side = Literal["buy", "sell"]
WebhookEventName = Literal[
    "leg.failed", "account.halted", "daily_loss_limit", "order.dead_lettered", "subscription.ended"
]


class Account(TypedDict):
    account_id: str
    broker: str
    label: str


class OrderAccepted(TypedDict):
    order_id: str
    client_order_id: str
    status: str


class Copy(TypedDict):
    leg_id: str
    order_id: str
    master_id: str
    account_id: str
    symbol: str
    side: Side
    qty: str | None
    status: str
    reason: str | None
    client_order_id: str
    broker_order_id: str | None
    filled_qty: str
    filled_avg_price: str | None
    created_at: str
    updated_at: str


class Order(TypedDict):
    order_id: str
    client_order_id: str
    account_id: str
    symbol: str
    side: Side
    qty: str
    type: str
    status: str
    created_at: str
    legs: dict[str, Any]


class PnlPosition(TypedDict):
    symbol: str
    subscription_id: str | None
    master_id: str | None
    followers: int | None
    position: str
    average_cost: str | None
    realized: str
    unrealized: str | None
    fees: str | None
    mark_price: str | None
    fills: int


class Pnl(TypedDict):
    role: Role
    method: str
    since: str | None
    until: str | None
    positions: list[PnlPosition]
    totals: dict[str, str | None]


class Webhook(TypedDict):
    webhook_id: str
    url: str
    events: list[str]
    created_at: str


class WebhookCreated(Webhook):
    secret: str


class CopytradeError(Exception):
    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.details = status, code, message, details


def verify_signature(
    secret: str, timestamp: str, body: bytes, signature: str, tolerance_s: float = 300
) -> bool:
    """Check a webhook delivery: `Copytrade-Signature` is v1=HMAC-SHA256(secret,
    "<Copytrade-Timestamp>.<body>"), and the timestamp is recent (replays are refused)."""
    try:
        if abs(time.time() - int(timestamp)) > tolerance_s:
            return False
    except ValueError:
        return False
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest("v1=" + mac.hexdigest(), signature)


def _error_body(response: httpx.Response) -> dict[str, Any]:
    try:
        error = response.json()["error"]
        if isinstance(error, dict) and isinstance(error.get("code"), str):
            return error
    except (ValueError, KeyError, TypeError):
        pass
    return {"code": f"http_{response.status_code}", "message": response.text}


def _error_code(response: httpx.Response) -> str:
    return str(_error_body(response)["code"])


def _error(response: httpx.Response) -> CopytradeError:
    error = _error_body(response)
    return CopytradeError(
        response.status_code, error["code"], str(error.get("message", "")), error.get("details")
    )


def _params(**values: Any) -> dict[str, str]:
    out = {}
    for key, value in values.items():
        if value is not None:
            out[key] = value.isoformat() if isinstance(value, datetime) else str(value)
    return out


class CopytradeClient:
    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        refresh_token: str | None = None,
        timeout_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, timeout=timeout_s, transport=transport)
        self.token = token
        self.refresh_token = refresh_token
        self._refreshing = asyncio.Lock()

    async def __aenter__(self) -> CopytradeClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        return await self.http.request(method, path, headers=headers, **kwargs)

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        sent_with = self.token
        response = await self._send(method, path, **kwargs)
        if (
            response.status_code == 401
            and self.refresh_token
            and _error_code(response) == "token_expired"
        ):
            await self._refresh_after(sent_with)
            response = await self._send(method, path, **kwargs)
        if response.status_code >= 400:
            raise _error(response)
        return response

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return (await self._call(method, path, **kwargs)).json()

    # Identity
    async def register(self, email: str, password: str, role: Role) -> str:
        body = {"email": email, "password": password, "role": role}
        return str((await self._json("POST", "/v1/auth/register", json=body))["user_id"])

    async def sign_in(self, email: str, password: str) -> str:
        body = {"email": email, "password": password}
        self._keep(await self._json("POST", "/v1/auth/token", json=body))
        assert self.token is not None
        return self.token

    def _keep(self, tokens: dict[str, Any]) -> None:
        self.token = str(tokens["access_token"])
        self.refresh_token = str(tokens["refresh_token"])

    async def refresh(self) -> str:
        """Rotate the session: a new access token and a new (single-use) refresh token."""
        async with self._refreshing:
            await self._rotate()
        assert self.token is not None
        return self.token

    async def _refresh_after(self, expired: str | None) -> None:
        async with self._refreshing:
            if self.token == expired:  # nobody refreshed while this call waited for the lock
                await self._rotate()

    async def _rotate(self) -> None:
        if not self.refresh_token:
            raise CopytradeError(401, "invalid_refresh_token", "no refresh token: sign in")
        body = {"refresh_token": self.refresh_token}
        response = await self.http.post("/v1/auth/refresh", json=body)
        if response.status_code >= 400:
            if response.status_code == 401:  # spent, expired or revoked: sign in again
                self.refresh_token = None
            raise _error(response)
        self._keep(response.json())

    async def logout(self) -> None:
        """End this session (its refresh tokens); the access token expires on its own."""
        if self.refresh_token:
            await self._call("POST", "/v1/auth/logout", json={"refresh_token": self.refresh_token})
        self.token = self.refresh_token = None

    # Accounts
    async def link_account(self, broker: str, label: str, credentials: dict[str, str]) -> Account:
        body = {"broker": broker, "label": label, "credentials": credentials}
        return cast(Account, await self._json("POST", "/v1/accounts", json=body))

    async def accounts(self) -> list[Account]:
        return cast(list[Account], await self._json("GET", "/v1/accounts"))

    async def halt_account(self, account_id: str, flatten: bool = False) -> dict[str, Any]:
        body = {"flatten": True} if flatten else None
        return cast(
            dict[str, Any], await self._json("POST", f"/v1/accounts/{account_id}/halt", json=body)
        )

    async def resume_account(self, account_id: str) -> dict[str, Any]:
        return cast(dict[str, Any], await self._json("POST", f"/v1/accounts/{account_id}/resume"))

    # Followers
    async def subscribe(
        self,
        master_id: str,
        account_id: str,
        sizing: dict[str, Any],
        caps: dict[str, Any] | None = None,
        filters: dict[str, Any] | None = None,
        invite_code: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"master_id": master_id, "account_id": account_id, "sizing": sizing}
        body.update(
            {
                k: v
                for k, v in (("caps", caps), ("filters", filters), ("invite_code", invite_code))
                if v is not None
            }
        )
        return cast(dict[str, Any], await self._json("POST", "/v1/subscriptions", json=body))

    async def unsubscribe(self, subscription_id: str, positions: str = "follow_exits") -> None:
        await self._call(
            "DELETE", f"/v1/subscriptions/{subscription_id}", params={"positions": positions}
        )

    async def copies_page(
        self,
        cursor: str = "",
        limit: int = 100,
        since: datetime | None = None,
        until: datetime | None = None,
        order_id: str | None = None,
    ) -> tuple[list[Copy], str | None]:
        """One page of copies, newest first, and the cursor of the next (None: the last)."""
        params = _params(cursor=cursor, limit=limit, since=since, until=until, order_id=order_id)
        page = await self._json("GET", "/v1/copies", params=params)
        return cast(list[Copy], page["items"]), page["next_cursor"]

    async def iter_copies(self, **filters: Any) -> AsyncIterator[Copy]:
        cursor: str | None = ""
        while cursor is not None:
            items, cursor = await self.copies_page(cursor, **filters)
            for item in items:
                yield item

    async def export_copies_csv(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> str:
        params = _params(since=since, until=until)
        headers = {"accept": "text/csv"}
        return (await self._call("GET", "/v1/copies", params=params, headers=headers)).text

    async def pnl(
        self,
        master_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Pnl:
        params = _params(master_id=master_id, since=since, until=until)
        return cast(Pnl, await self._json("GET", "/v1/pnl", params=params))

    # Masters
    async def place_order(
        self,
        account_id: str,
        symbol: str,
        side: Side,
        qty: str,
        type: str = "market",
        time_in_force: str = "day",
        client_order_id: str | None = None,
        **prices: str,
    ) -> OrderAccepted:
        body = {
            "client_order_id": client_order_id or uuid.uuid4().hex,
            "account_id": account_id,
            "symbol": symbol,
            "side": side,
            "qty": qty,
            "type": type,
            "time_in_force": time_in_force,
            **prices,
        }
        return cast(OrderAccepted, await self._json("POST", "/v1/orders", json=body))

    async def order(self, order_id: str) -> Order:
        return cast(Order, await self._json("GET", f"/v1/orders/{order_id}"))

    async def cancel_order(self, order_id: str) -> None:
        await self._call("POST", f"/v1/orders/{order_id}/cancel")

    async def orders_page(
        self,
        cursor: str = "",
        limit: int = 20,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> tuple[list[Order], str | None]:
        params = _params(cursor=cursor, limit=limit, since=since, until=until)
        page = await self._json("GET", "/v1/orders", params=params)
        return cast(list[Order], page["items"]), page["next_cursor"]

    async def iter_orders(self, **filters: Any) -> AsyncIterator[Order]:
        cursor: str | None = ""
        while cursor is not None:
            items, cursor = await self.orders_page(cursor, **filters)
            for item in items:
                yield item

    # Webhooks
    async def create_webhook(self, url: str, events: list[WebhookEventName]) -> WebhookCreated:
        body = {"url": url, "events": events}
        return cast(WebhookCreated, await self._json("POST", "/v1/webhooks", json=body))

    async def webhooks(self) -> list[Webhook]:
        return cast(list[Webhook], await self._json("GET", "/v1/webhooks"))

    async def delete_webhook(self, webhook_id: str) -> None:
        await self._call("DELETE", f"/v1/webhooks/{webhook_id}")

    async def deliveries(self, webhook_id: str) -> list[dict[str, Any]]:
        path = f"/v1/webhooks/{webhook_id}/deliveries"
        return cast(list[dict[str, Any]], await self._json("GET", path))
