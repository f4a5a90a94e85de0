"""Bad input and unauthorized requests: a 4xx with a machine-readable code, and no change."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.helpers import Api, Stack


async def _counts(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        out = {}
        # Legs are written by the workers in the background; a rejected order has no row in
        # master_orders, so it can have no legs either.
        for table in ("users", "accounts", "subscriptions", "master_orders", "halts"):
            out[table] = int(
                (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
            )
        return out


def _assert_error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str)
    assert "Traceback" not in response.text


BAD_ORDERS = [
    ({"qty": "-1"}, "validation_error"),
    ({"qty": "0"}, "validation_error"),
    ({"qty": "abc"}, "validation_error"),
    ({"qty": 1.5}, "validation_error"),
    ({"qty": "1e3"}, "validation_error"),
    ({"side": "hold"}, "validation_error"),
    ({"type": "trailing"}, "validation_error"),
    ({"type": "limit"}, "missing_limit_price"),
    ({"type": "stop_limit", "limit_price": "10"}, "missing_stop_price"),
    ({"type": "market", "limit_price": "10"}, "unexpected_price"),
    ({"time_in_force": "forever"}, "validation_error"),
    ({"symbol": "aapl; drop table"}, "validation_error"),
    ({"client_order_id": ""}, "validation_error"),
    ({"surprise": "field"}, "validation_error"),
]


@pytest.mark.parametrize("fields,code", BAD_ORDERS)
async def test_bad_orders_change_nothing(
    api: Api, engine: AsyncEngine, fields: dict[str, Any], code: str
) -> None:
    _, token = await api.user("master")
    account_id, _ = await api.sim_account(token)
    before = await _counts(engine)
    _assert_error(await api.order(token, account_id, **fields), 422, code)
    assert await _counts(engine) == before


async def test_ownership_and_roles(api: Api, engine: AsyncEngine) -> None:
    master_id, master_token = await api.user("master")
    master_account, _ = await api.sim_account(master_token)
    _, other_token = await api.user("master")
    other_account, _ = await api.sim_account(other_token)
    follower_id, follower_token = await api.user("follower")
    follower_account, _ = await api.sim_account(follower_token)
    before = await _counts(engine)

    # Unknown account, another user's account, a follower placing master orders.
    _assert_error(await api.order(master_token, str(uuid.uuid4())), 404, "account_not_found")
    _assert_error(await api.order(master_token, other_account), 404, "account_not_found")
    _assert_error(await api.order(follower_token, follower_account), 403, "forbidden")
    # A master cannot subscribe; a follower cannot follow a follower or use others' accounts.
    body = {
        "master_id": master_id,
        "account_id": master_account,
        "sizing": {"mode": "fixed", "qty": "1"},
    }
    _assert_error(
        await api.http.post("/v1/subscriptions", headers=api.auth(master_token), json=body),
        403,
        "forbidden",
    )
    body = {
        "master_id": follower_id,
        "account_id": follower_account,
        "sizing": {"mode": "fixed", "qty": "1"},
    }
    _assert_error(
        await api.http.post("/v1/subscriptions", headers=api.auth(follower_token), json=body),
        404,
        "master_not_found",
    )
    body = {
        "master_id": master_id,
        "account_id": other_account,
        "sizing": {"mode": "fixed", "qty": "1"},
    }
    _assert_error(
        await api.http.post("/v1/subscriptions", headers=api.auth(follower_token), json=body),
        404,
        "account_not_found",
    )
    # Halting someone else's account, reading someone else's order.
    _assert_error(
        await api.http.post(f"/v1/accounts/{other_account}/halt", headers=api.auth(master_token)),
        404,
        "account_not_found",
    )
    order = (await api.order(other_token, other_account)).json()
    after_order = await _counts(engine)
    _assert_error(
        await api.http.get(f"/v1/orders/{order['order_id']}", headers=api.auth(master_token)),
        404,
        "order_not_found",
    )
    _assert_error(
        await api.http.get("/v1/copies", headers=api.auth(master_token)), 403, "forbidden"
    )
    assert after_order["master_orders"] == before["master_orders"] + 1
    assert after_order["accounts"] == before["accounts"]
    assert after_order["subscriptions"] == before["subscriptions"]


@pytest.mark.parametrize(
    "sizing,caps,code",
    [
        ({"mode": "equity_ratio", "factor": "0"}, None, "validation_error"),
        ({"mode": "notional"}, None, "validation_error"),
        ({"mode": "risk_percent", "percent": "150"}, None, "validation_error"),
        ({"mode": "fixed", "qty": "1"}, {"max_position": "-10"}, "validation_error"),
        ({"mode": "fixed", "qty": "1"}, {"max_open_positions": 0}, "validation_error"),
        ({"mode": "fixed", "qty": "1"}, {"max_loss": "5"}, "validation_error"),
        ({"mode": "fixed", "qty": "-1"}, None, "validation_error"),
        ({"mode": "multiplier"}, None, "validation_error"),
        ({"mode": "martingale"}, None, "validation_error"),
        ({"mode": "fixed", "qty": "1"}, {"on_cap": "explode"}, "validation_error"),
    ],
)
async def test_bad_subscriptions(
    api: Api, engine: AsyncEngine, sizing: dict[str, Any], caps: dict[str, Any] | None, code: str
) -> None:
    master_id, _ = await api.user("master")
    _, token = await api.user("follower")
    account_id, _ = await api.sim_account(token)
    before = await _counts(engine)
    body: dict[str, Any] = {"master_id": master_id, "account_id": account_id, "sizing": sizing}
    if caps:
        body["caps"] = caps
    _assert_error(
        await api.http.post("/v1/subscriptions", headers=api.auth(token), json=body), 422, code
    )
    assert await _counts(engine) == before


def _token(secret: str, **overrides: Any) -> str:
    now = int(time.time())
    claims = {
        "sub": str(uuid.uuid4()),
        "role": "master",
        "iss": "copytrade",
        "aud": "copytrade-api",
        "iat": now,
        "exp": now + 60,
        **overrides,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


async def test_tokens(api: Api, stack: Stack) -> None:
    secret = stack.env["COPYTRADE_JWT_SECRET"]
    missing = await api.http.get("/v1/accounts")
    _assert_error(missing, 401, "unauthorized")
    garbage = await api.http.get("/v1/accounts", headers=api.auth("garbage"))
    _assert_error(garbage, 401, "invalid_token")
    assert garbage.json()["error"]["message"] == "invalid token"
    expired = _token(secret, exp=int(time.time()) - 120, iat=int(time.time()) - 300)
    late = await api.http.get("/v1/accounts", headers=api.auth(expired))
    _assert_error(late, 401, "token_expired")
    assert late.json()["error"]["message"] == "token expired"
    for response in (missing, garbage, late):
        assert response.headers["www-authenticate"] == "Bearer"
    forged = _token("an-attacker-guessed-this-secret-and-it-is-wrong")
    _assert_error(
        await api.http.get("/v1/accounts", headers=api.auth(forged)), 401, "invalid_token"
    )
    assert (await api.http.get("/v1/accounts", headers=api.auth(_token(secret)))).status_code == 200


async def test_register_login_and_throttle(api: Api) -> None:
    email = f"t-{uuid.uuid4().hex[:8]}@example.test"
    body = {"email": email, "password": "long enough", "role": "follower"}
    assert (await api.http.post("/v1/auth/register", json=body)).status_code == 201
    _assert_error(await api.http.post("/v1/auth/register", json=body), 409, "email_taken")
    _assert_error(
        await api.http.post("/v1/auth/register", json={**body, "role": "admin"}),
        422,
        "validation_error",
    )
    _assert_error(
        await api.http.post("/v1/auth/register", json={**body, "email": "not-an-email"}),
        422,
        "invalid_email",
    )
    _assert_error(
        await api.http.post(
            "/v1/auth/register", content=b"{not json", headers={"content-type": "application/json"}
        ),
        422,
        "invalid_json",
    )
    for _ in range(20):
        _assert_error(
            await api.http.post("/v1/auth/token", json={"email": email, "password": "wrong"}),
            401,
            "invalid_credentials",
        )
    # The counter lives in Redis, shared by every API replica: from this address even the right
    # password waits, for a backoff (not a five-minute lock; tests/security covers the rest).
    throttled = await api.http.post(
        "/v1/auth/token", json={"email": email, "password": "long enough"}
    )
    _assert_error(throttled, 429, "too_many_attempts")
    assert int(throttled.headers["retry-after"]) in range(1, 3)


async def test_a_forwarded_address_is_not_trusted_and_the_server_is_not_named(api: Api) -> None:
    """The API's server (uvicorn) takes the client's address from the connection: rotating
    X-Forwarded-For does not make a fresh client of each failed sign-in (uvicorn's default
    would trust it from 127.0.0.1). And no `server` header tells anyone what runs here."""
    email = f"xff-{uuid.uuid4().hex[:8]}@example.test"
    body = {"email": email, "password": "long enough", "role": "follower"}
    registered = await api.http.post("/v1/auth/register", json=body)
    assert registered.status_code == 201 and "server" not in registered.headers
    for i in range(20):
        _assert_error(
            await api.http.post(
                "/v1/auth/token",
                json={"email": email, "password": "wrong"},
                headers={
                    "x-forwarded-for": f"203.0.113.{i + 1}",
                    "forwarded": f"for=198.51.100.{i}",
                },
            ),
            401,
            "invalid_credentials",
        )
    throttled = await api.http.post(
        "/v1/auth/token",
        json={"email": email, "password": "long enough"},
        headers={"x-forwarded-for": "203.0.113.200"},
    )
    _assert_error(throttled, 429, "too_many_attempts")
    assert "server" not in (await api.http.get("/healthz")).headers


async def test_accounts_never_echo_credentials(api: Api) -> None:
    _, token = await api.user("follower")
    account_id, sim_id = await api.sim_account(token)
    key_id, secret = api.sim_keys[sim_id]
    listing = await api.http.get("/v1/accounts", headers=api.auth(token))
    assert account_id in listing.text
    assert secret not in listing.text and key_id not in listing.text
    _assert_error(
        await api.http.post(
            "/v1/accounts",
            headers=api.auth(token),
            json={
                "broker": "kite",
                "label": "x",
                "credentials": {"key_id": "a", "secret_key": "b"},
            },
        ),
        422,
        "invalid_credentials",  # Kite takes api_key and access_token
    )
    # Well-formed keys of the other brokers pass the typed model and reach the broker (the
    # e2e stack's venue, answering as each broker documents), which refuses them: never stored.
    for broker, credentials in (
        ("kite", {"api_key": "k", "access_token": "t", "exchange": "NSE"}),
        ("binance", {"api_key": "k", "secret_key": "s", "watch_symbols": ["BTCUSDT"]}),
        ("alpaca", {"key_id": "k", "secret_key": "s", "paper": True}),
    ):
        r = await api.http.post(
            "/v1/accounts",
            headers=api.auth(token),
            json={"broker": broker, "label": broker, "credentials": credentials},
        )
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "invalid_credentials"
    listed = (await api.http.get("/v1/accounts", headers=api.auth(token))).json()
    assert [a["account_id"] for a in listed] == [account_id]
    _assert_error(
        await api.http.post(
            "/v1/accounts",
            headers=api.auth(token),
            json={
                "broker": "binance",
                "label": "x",
                "credentials": {"api_key": "k", "secret_key": "s", "testnet": "yes"},
            },
        ),
        422,
        "invalid_credentials",
    )
    _assert_error(
        await api.http.post(
            "/v1/accounts",
            headers=api.auth(token),
            json={"broker": "sim", "label": "x", "credentials": {"key_id": "a"}},
        ),
        422,
        "invalid_credentials",
    )


async def test_ops_endpoints(api: Api) -> None:
    assert (await api.http.get("/healthz")).json() == {"status": "ok"}
    ready = await api.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "nats": "ok", "redis": "ok"}
    metrics = await api.http.get("/metrics")
    assert "copytrade_orders_ingested_total" in metrics.text
    _assert_error(await api.http.get("/v1/nothing-here"), 404, "not_found")


async def test_an_order_on_a_deleted_account_is_404_not_500(api: Api) -> None:
    # Found by the stateful fuzz run: a deleted account keeps a tombstone row whose sealed
    # credentials are empty; ordering on it must be "no such account", not a server error.
    _, master = await api.user("master")
    account, _ = await api.sim_account(master)
    r = await api.http.delete(f"/v1/accounts/{account}", headers=api.auth(master))
    assert r.status_code == 204, r.text
    r = await api.order(master, account, symbol="DEL")
    assert r.status_code == 404 and r.json()["error"]["code"] == "account_not_found", r.text
