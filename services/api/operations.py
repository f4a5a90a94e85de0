"""What the OpenAPI document says about each operation beyond what the code shows: its tag, a
one-line summary, the route-specific error codes (generic ones are derived: see
services/api/openapi.py) and a request example; examples of the answer bodies by schema.

Every operation of the API has an entry (tests/unit/test_openapi.py walks the document)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ACCOUNT = "0b9e3b52-5a4c-4c55-9d0e-2f0d1f6c7a10"
MASTER = "6f1c2d3e-4b5a-4f60-8a7b-9c0d1e2f3a4b"
SUBSCRIPTION = "3c2b1a09-8f7e-4d6c-9b5a-4e3f2d1c0b9a"
ORDER = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
LEG = "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"
AT = "2026-11-30T14:30:00Z"

TAGS: list[dict[str, str]] = [
    {"name": "auth", "description": "Registration, sign-in, refresh tokens and logout."},
    {"name": "accounts", "description": "Broker accounts: link, change, halt, remove."},
    {"name": "subscriptions", "description": "A follower's copy settings per master."},
    {"name": "masters", "description": "A master's consent to be copied: access, invites."},
    {"name": "orders", "description": "A master's orders and their replication."},
    {"name": "copies", "description": "A follower's copies (legs), their history and retries."},
    {"name": "pnl", "description": "Profit and loss of copies."},
    {"name": "webhooks", "description": "Signed notifications to the user's own endpoints."},
    {"name": "admin", "description": "Kill switches (admin role)."},
    {"name": "dashboard", "description": "Tokens for the live dashboard's WebSocket."},
    {"name": "ops", "description": "Liveness, readiness, metrics."},
]


@dataclass(frozen=True)
class Operation:
    tag: str
    summary: str
    # Route-specific codes by status, beyond the derived ones.
    errors: dict[int, tuple[str, ...]] = field(default_factory=dict)
    request: dict[str, Any] | None = None  # an example request body
    response: Any = None  # an example answer, where no schema carries one
    csv: bool = False  # also answers text/csv (Accept: text/csv)


SIZING = {"mode": "multiplier", "factor": "2"}
CAPS = {"max_qty": "100", "daily_loss_limit": "500", "on_cap": "clamp"}
FILTERS = {"symbols_allow": ["AAPL", "MSFT"], "sides": ["buy", "sell"]}
_CREDENTIALS = {"key_id": "PKTEST1234", "secret_key": "secret-from-the-simulator"}
_HALT = {"flatten": False}
_ORDER_BODY = {
    "client_order_id": "my-order-0001",
    "account_id": ACCOUNT,
    "symbol": "AAPL",
    "side": "buy",
    "qty": "10",
    "type": "limit",
    "limit_price": "187.5",
    "time_in_force": "day",
}

OPERATIONS: dict[str, Operation] = {
    "POST /v1/auth/register": Operation(
        "auth",
        "Register a master or a follower",
        {409: ("email_taken",), 429: ("too_many_requests",), 422: ("invalid_email",)},
        {"email": "ada@example.com", "password": "correct horse battery", "role": "follower"},
    ),
    "POST /v1/auth/token": Operation(
        "auth",
        "Sign in: an access token and a refresh token",
        {401: ("invalid_credentials",), 429: ("too_many_attempts",)},
        {"email": "ada@example.com", "password": "correct horse battery"},
    ),
    "POST /v1/auth/refresh": Operation(
        "auth",
        "Rotate a refresh token: new access and refresh tokens",
        {401: ("invalid_refresh_token", "refresh_token_reused"), 429: ("too_many_attempts",)},
        {"refresh_token": "q3JmXh0m9kq5S7d2lJ6wqkzq1bqk0Ue8h0m1m3kX4tY"},
    ),
    "POST /v1/auth/logout": Operation(
        "auth",
        "Log out: revoke the session of a refresh token",
        {},
        {"refresh_token": "q3JmXh0m9kq5S7d2lJ6wqkzq1bqk0Ue8h0m1m3kX4tY"},
    ),
    "GET /v1/accounts": Operation("accounts", "List your broker accounts"),
    "POST /v1/accounts": Operation(
        "accounts",
        "Link a broker account",
        {422: ("invalid_credentials", "broker_not_supported", "control_character")},
        {"broker": "sim", "label": "paper", "credentials": _CREDENTIALS},
    ),
    "PATCH /v1/accounts/{account_id}": Operation(
        "accounts",
        "Change an account's label or credentials (verified at the broker)",
        {422: ("invalid_credentials",)},
        {"label": "main", "credentials": _CREDENTIALS},
    ),
    "DELETE /v1/accounts/{account_id}": Operation(
        "accounts", "Remove an account", {409: ("account_in_use",)}
    ),
    "POST /v1/accounts/{account_id}/halt": Operation(
        "accounts", "Halt copying into an account (optionally flatten)", request=_HALT
    ),
    "POST /v1/accounts/{account_id}/resume": Operation(
        "accounts", "Resume copying into an account"
    ),
    "GET /v1/subscriptions": Operation("subscriptions", "List your subscriptions"),
    "POST /v1/subscriptions": Operation(
        "subscriptions",
        "Follow a master",
        {
            403: ("invite_required", "master_closed"),
            404: ("account_not_found", "master_not_found"),
            409: ("subscription_exists",),
        },
        {
            "master_id": MASTER,
            "account_id": ACCOUNT,
            "sizing": SIZING,
            "caps": CAPS,
            "filters": FILTERS,
            "invite_code": "inv_7Qm2x9",
        },
    ),
    "PATCH /v1/subscriptions/{subscription_id}": Operation(
        "subscriptions",
        "Change copy settings, pause or resume",
        request={"paused": True, "caps": {"max_qty": "50"}},
    ),
    "DELETE /v1/subscriptions/{subscription_id}": Operation(
        "subscriptions", "End a subscription (follow exits, close or keep positions)"
    ),
    "GET /v1/masters/me": Operation(
        "masters",
        "Your master profile and copy access",
        {403: ("forbidden",), 404: ("master_not_found",)},
    ),
    "PATCH /v1/masters/me": Operation(
        "masters",
        "Set your copy access and display name",
        {403: ("forbidden",), 404: ("master_not_found",)},
        {"copy_access": "invite", "display_name": "Momentum desk"},
    ),
    "POST /v1/masters/me/invites": Operation(
        "masters",
        "Create an invite code",
        {403: ("forbidden",)},
        {"max_uses": 10, "expires_in_s": 86400},
    ),
    "GET /v1/masters/me/followers": Operation(
        "masters", "List your followers (no identities)", {403: ("forbidden",)}
    ),
    "DELETE /v1/masters/me/followers/{subscription_id}": Operation(
        "masters", "Remove a follower", {403: ("forbidden",)}
    ),
    "POST /v1/orders": Operation(
        "orders",
        "Place an order to be copied",
        {
            404: ("account_not_found",),
            409: ("idempotency_conflict",),
            422: (
                "missing_limit_price",
                "missing_stop_price",
                "unexpected_price",
                "not_tradable",
                "fractional_not_supported",
                "qty_step",
                "below_min_qty",
                "insufficient_buying_power",
            ),
        },
        _ORDER_BODY,
    ),
    "GET /v1/orders": Operation(
        "orders",
        "Your orders, newest first (cursor pages, CSV)",
        {422: ("invalid_cursor",)},
        csv=True,
    ),
    "GET /v1/orders/{order_id}": Operation("orders", "An order and its replication progress"),
    "PATCH /v1/orders/{order_id}": Operation(
        "orders",
        "Replace an order (quantity, prices); open copies follow",
        {409: ("order_canceled",), 422: ("empty_replace", "unexpected_price")},
        {"qty": "12", "limit_price": "186.9"},
    ),
    "POST /v1/orders/{order_id}/cancel": Operation("orders", "Cancel an order and every open copy"),
    "GET /v1/copies": Operation(
        "copies",
        "Your copies, newest first (cursor pages, CSV)",
        {422: ("invalid_cursor",)},
        csv=True,
    ),
    "POST /v1/copies/{leg_id}/retry": Operation(
        "copies", "Retry a failed copy, exactly once", {409: ("not_retryable",)}
    ),
    "GET /v1/pnl": Operation(
        "pnl",
        "Profit and loss of your copies (masters: aggregates)",
        {403: ("forbidden",), 404: ("master_not_found",)},
    ),
    "GET /v1/webhooks": Operation("webhooks", "List your webhooks"),
    "POST /v1/webhooks": Operation(
        "webhooks",
        "Create a webhook (its signing secret is shown once)",
        {422: ("webhook_address_refused",)},
        {"url": "https://hooks.example.com/copytrade", "events": ["leg.failed"]},
    ),
    "DELETE /v1/webhooks/{webhook_id}": Operation("webhooks", "Delete a webhook"),
    "GET /v1/webhooks/{webhook_id}/deliveries": Operation(
        "webhooks", "A webhook's recent deliveries and attempts"
    ),
    "POST /v1/admin/halt": Operation(
        "admin", "Halt all copying (global kill switch)", {403: ("forbidden",)}, _HALT
    ),
    "POST /v1/admin/resume": Operation("admin", "Lift the global halt", {403: ("forbidden",)}),
    "POST /v1/admin/masters/{master_id}/halt": Operation(
        "admin", "Halt copying of one master", {403: ("forbidden",)}, _HALT
    ),
    "POST /v1/admin/masters/{master_id}/resume": Operation(
        "admin", "Resume copying of one master", {403: ("forbidden",)}
    ),
    "GET /v1/admin/halts": Operation("admin", "Halts in force", {403: ("forbidden",)}),
    "GET /v1/admin/legs": Operation(
        "admin", "Failed (retryable) or in-doubt follower copies", {403: ("forbidden",)}
    ),
    "GET /v1/admin/orders/dead-lettered": Operation(
        "admin", "Master orders parked after running out of deliveries", {403: ("forbidden",)}
    ),
    "GET /v1/brokers": Operation("accounts", "Brokers an account can be linked at"),
    "POST /v1/ws/token": Operation("dashboard", "A single-use token for one WebSocket"),
    "GET /healthz": Operation("ops", "Liveness", response={"status": "ok"}),
    "GET /readyz": Operation(
        "ops",
        "Readiness: PostgreSQL, NATS and Redis reachable",
        response={"status": "ready", "checks": {"database": "ok", "nats": "ok", "redis": "ok"}},
    ),
    "GET /metrics": Operation(
        "ops",
        "Prometheus metrics",
        {404: ("not_found",)},
        response="# TYPE copytrade_orders_accepted_total counter\n",
    ),
}
