"""The API's error taxonomy: each class keeps the code and status API.md promises, and the one
handler writes {"error": {"code", "message", "details"}} for API and lower-layer errors alike."""

from __future__ import annotations

import json

import pytest

from services.api import errors
from services.infra.auth import TokenError, TokenExpired
from services.infra.brokerage import BrokerNotSupported, CredentialsRejected, validate_credentials

CONTRACT = [
    (errors.Unauthorized, 401, "unauthorized"),
    (errors.WrongPassword, 401, "invalid_credentials"),
    (errors.Forbidden, 403, "forbidden"),
    (errors.AccountNotFound, 404, "account_not_found"),
    (errors.MasterNotFound, 404, "master_not_found"),
    (errors.SubscriptionNotFound, 404, "subscription_not_found"),
    (errors.OrderNotFound, 404, "order_not_found"),
    (errors.EmailTaken, 409, "email_taken"),
    (errors.SubscriptionExists, 409, "subscription_exists"),
    (errors.IdempotencyConflict, 409, "idempotency_conflict"),
    (errors.OrderCanceled, 409, "order_canceled"),
    (errors.Unprocessable, 422, "validation_error"),
    (errors.UnexpectedPrice, 422, "unexpected_price"),
    (errors.TooManyAttempts, 429, "too_many_attempts"),
]


def _answer(exc: Exception) -> tuple[int, dict[str, object], dict[str, str]]:
    response = errors.typed_error_response(exc)
    return response.status_code, json.loads(bytes(response.body)), dict(response.headers)


@pytest.mark.parametrize(("kind", "status", "code"), CONTRACT)
def test_each_api_error_keeps_its_code_and_status(
    kind: type[errors.ApiError], status: int, code: str
) -> None:
    answered, body, _ = _answer(kind())
    assert (answered, body["error"]) == (status, {"code": code, "message": kind.default_message})


def test_details_and_headers_travel() -> None:
    status, body, _ = _answer(errors.IdempotencyConflict(details={"order_id": "o1"}))
    assert status == 409 and body["error"] == {
        "code": "idempotency_conflict",
        "message": "client_order_id was already used with a different order",
        "details": {"order_id": "o1"},
    }
    assert _answer(errors.Unauthorized())[2]["www-authenticate"] == "Bearer"
    assert (
        _answer(errors.TooManyAttempts(headers={"Retry-After": "300"}))[2]["retry-after"] == "300"
    )


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (TokenError("invalid token"), "invalid_token"),
        (TokenExpired("token expired"), "token_expired"),
    ],
)
def test_token_errors_are_401_with_their_code(exc: TokenError, code: str) -> None:
    status, body, headers = _answer(exc)
    assert (status, body["error"]) == (401, {"code": code, "message": str(exc)})
    assert headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("broker", "credentials", "kind", "code"),
    [
        ("nyse", {}, BrokerNotSupported, "broker_not_supported"),
        ("sim", {"key_id": "k"}, CredentialsRejected, "invalid_credentials"),
        (
            "sim",
            {"key_id": "k", "secret_key": "s", "x": 1},
            CredentialsRejected,
            "invalid_credentials",
        ),
        (
            "alpaca",
            {"key_id": "k", "secret_key": "s", "paper": "yes"},
            CredentialsRejected,
            "invalid_credentials",
        ),
        (
            "binance",
            {"api_key": "k", "secret_key": "s", "watch_symbols": ["BTC-USDT"]},
            CredentialsRejected,
            "invalid_credentials",
        ),
    ],
)
def test_credentials_are_rejected_where_checked_with_a_code(
    broker: str, credentials: dict[str, object], kind: type[CredentialsRejected], code: str
) -> None:
    with pytest.raises(kind) as caught:
        validate_credentials(broker, credentials)
    status, body, headers = _answer(caught.value)
    assert (status, body["error"]["code"]) == (422, code)
    assert "www-authenticate" not in headers


def test_good_credentials_pass() -> None:
    validate_credentials("kite", {"api_key": "k", "access_token": "t", "exchange": "NSE"})
