"""API errors: every failure leaves as {"error": {"code", "message", "details"}}; no tracebacks.

Each refusal is an exception class that carries its code and HTTP status; one handler turns
any of them into the wire body. The tree:

    ApiError                        (status, code, default message)
    ├── Unauthorized                401 unauthorized         (WWW-Authenticate: Bearer)
    ├── WrongPassword               401 invalid_credentials
    ├── Forbidden                   403 forbidden, invite_required, master_closed
    ├── NotFound                    404 account_not_found, master_not_found, copy_not_found, …
    ├── Conflict                    409 email_taken, subscription_exists, idempotency_conflict,
    │                                   order_canceled, not_retryable, account_in_use,
    │                                   account_deleting
    ├── PayloadTooLarge             413 payload_too_large      (services/api/limits.py)
    ├── Unprocessable               422 validation_error, unexpected_price
    ├── TooManyAttempts             429 too_many_attempts, too_many_requests, rate_limited
    │                                   (Retry-After)
    └── Unavailable                 503 unavailable            (Retry-After)

A dependency that cannot be reached (PostgreSQL, Redis or NATS down or restarting; see
services.infra.availability) is answered 503 `unavailable` with Retry-After, never 500: the
client retries the same request (an order: same client_order_id, idempotent).

Errors raised below the API keep their own classes and carry only `code`; the handler gives
their status (the auth and brokerage modules know nothing about HTTP):

    services.infra.auth.TokenError            401 invalid_token / token_expired
    services.app.sessions.RefreshRejected     401 invalid_refresh_token / refresh_token_reused
    services.infra.brokerage.CredentialsRejected  422 invalid_credentials / broker_not_supported
    services.infra.brokerage.BrokerUnreachable    503 unavailable (checking credentials)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from schemas.api import CUSTOM_ERROR_CODES
from schemas.common import ErrorBody
from services.app.sessions import RefreshRejected
from services.infra.auth import TokenError
from services.infra.availability import dependency_unavailable
from services.infra.brokerage import BrokerUnreachable, CredentialsRejected

log = logging.getLogger("copytrade.api")

BEARER = {"WWW-Authenticate": "Bearer"}


class ApiError(Exception):
    """A refusal the API answers with `status` and `code`; subclasses fix both."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    default_message: ClassVar[str] = "internal error"
    default_headers: ClassVar[dict[str, str] | None] = None

    def __init__(
        self,
        message: str | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)
        self.details = details
        self.headers = headers if headers is not None else self.default_headers


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"
    default_message = "a bearer token is required"
    default_headers = BEARER


class WrongPassword(ApiError):
    status, code = 401, "invalid_credentials"
    default_message = "email or password is wrong"


class Forbidden(ApiError):
    status, code = 403, "forbidden"
    default_message = "this needs another role"


class InviteRequired(Forbidden):
    code, default_message = "invite_required", "this master needs a valid invite code"


class MasterClosed(Forbidden):
    code, default_message = "master_closed", "this master takes no new followers"


class NotFound(ApiError):
    status, code = 404, "not_found"


class AccountNotFound(NotFound):
    code, default_message = "account_not_found", "no such account"


class MasterNotFound(NotFound):
    code, default_message = "master_not_found", "no such master"


class SubscriptionNotFound(NotFound):
    code, default_message = "subscription_not_found", "no such subscription"


class OrderNotFound(NotFound):
    code, default_message = "order_not_found", "no such order"


class CopyNotFound(NotFound):
    code, default_message = "copy_not_found", "no such copy"


class Conflict(ApiError):
    status = 409


class EmailTaken(Conflict):
    code, default_message = "email_taken", "that email is already registered"


class SubscriptionExists(Conflict):
    code, default_message = "subscription_exists", "this account already follows this master"


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"
    default_message = "client_order_id was already used with a different order"


class OrderCanceled(Conflict):
    code, default_message = "order_canceled", "a canceled order cannot be replaced"


class NotRetryable(Conflict):
    code, default_message = "not_retryable", "only a failed or expired copy can be retried"


class AccountDeleting(Conflict):
    code, default_message = "account_deleting", "the account is being deleted"


class AccountInUse(Conflict):
    code = "account_in_use"
    default_message = "the account has open copies; end its subscriptions first"


class Unprocessable(ApiError):
    status, code = 422, "validation_error"
    default_message = "the request is not valid"


class UnexpectedPrice(Unprocessable):
    code = "unexpected_price"


class BrokerWouldRefuse(Unprocessable):
    """The master's broker would refuse this order (issue 18); the answer's code is the rule:
    not_tradable, fractional_not_supported, qty_step, below_min_qty, fractional_needs_day,
    insufficient_buying_power."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message, details={"rule": rule})
        self.rule = rule


class TooManyAttempts(ApiError):
    status, code = 429, "too_many_attempts"
    default_message = "too many failed sign-ins; try again later"


class Unavailable(ApiError):
    status, code = 503, "unavailable"
    default_message = "a dependency is unavailable; retry the same request shortly"
    default_headers = {"Retry-After": "2"}


def _declared(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


# Every refusal a route may answer, declared in the OpenAPI document (clients and the
# Schemathesis run in the suite rely on it: no undocumented status).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _declared("no, a bad or an expired bearer token; wrong credentials"),
    403: _declared("the caller's role may not do this"),
    404: _declared("no such resource (or not the caller's)"),
    409: _declared("conflicts with the current state (taken, exists, replayed differently)"),
    413: _declared("the body is over the size limit"),
    422: _declared("the request is not valid; `details.fields` names the fields"),
    429: _declared("too many attempts; see Retry-After"),
    503: _declared("a dependency is unavailable; retry the same request after Retry-After"),
}


class TooManyRequests(TooManyAttempts):
    code, default_message = "too_many_requests", "too many requests from this address"


class RateLimited(TooManyAttempts):
    code, default_message = "rate_limited", "too many writes from this user; see Retry-After"


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def typed_error_response(exc: Exception) -> JSONResponse:
    """The answer for an ApiError, TokenError, CredentialsRejected or BrokerUnreachable."""
    if isinstance(exc, BrokerWouldRefuse):
        return error_response(exc.status, exc.rule, exc.message, exc.details)
    if isinstance(exc, ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)
    # Errors raised outside the API carry only a code; their status is given here.
    if isinstance(exc, TokenError):
        return error_response(401, exc.code, str(exc), None, BEARER)
    if isinstance(exc, CredentialsRejected):
        return error_response(422, exc.code, str(exc))
    if isinstance(exc, BrokerUnreachable):
        return error_response(503, Unavailable.code, str(exc), None, Unavailable.default_headers)
    if isinstance(exc, RefreshRejected):
        return error_response(401, exc.code, str(exc))
    raise TypeError(f"{type(exc).__name__} has no API mapping")


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for error in exc.errors():
        location = [str(part) for part in error.get("loc", ()) if part != "body"]
        out.append(
            {"field": ".".join(location), "type": error.get("type"), "message": error.get("msg")}
        )
    return out


async def _typed(request: Request, exc: Exception) -> JSONResponse:
    return typed_error_response(exc)


def _unparsed_body(request: Request) -> JSONResponse:
    """A body that is not JSON (or not UTF-8): who is asking comes first (401/403), then 422."""
    check = getattr(request.app.state, "caller_refusal", None)
    refusal = check(request) if check is not None else None
    if refusal is not None:
        return typed_error_response(refusal)
    return error_response(422, "invalid_json", "the request body is not valid JSON")


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    fields = _field_errors(exc)
    # Pydantic custom error types (schemas.api.CUSTOM_ERROR_CODES) are our codes already.
    custom = [f for f in fields if f["type"] in CUSTOM_ERROR_CODES]
    code = str(custom[0]["type"]) if custom else "validation_error"
    message = str(custom[0]["message"]) if custom else "the request is not valid"
    if fields and fields[0]["type"] == "json_invalid":
        response = _unparsed_body(request)
        if response.status_code != 422:
            return response
        code, message = "invalid_json", "the request body is not valid JSON"
    return error_response(422, code, message, {"fields": fields})


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        # FastAPI's answer to a body it could not decode at all (invalid UTF-8): the same
        # refusal as any other body that is not JSON.
        return _unparsed_body(request)
    codes = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}
    headers = dict(exc.headers) if exc.headers else None
    if exc.status_code == 405:
        headers = {**(headers or {}), "Allow": _allowed(request)}
    return error_response(
        exc.status_code,
        codes.get(exc.status_code, f"http_{exc.status_code}"),
        str(exc.detail),
        headers=headers,
    )


def _allowed(request: Request) -> str:
    """Every method any route of this path answers (Starlette's own Allow names only the first
    route that matched the path, and a path may have one route per method)."""
    scope = {**request.scope, "method": "GET", "type": "http"}
    methods: set[str] = set()
    pending = list(request.app.router.routes)
    while pending:
        route = pending.pop()
        included = getattr(route, "original_router", None)  # FastAPI's included routers
        if included is not None:
            pending.extend(included.routes)
        elif getattr(route, "methods", None) and route.matches(scope)[0] is not Match.NONE:
            methods |= set(route.methods)
    return ", ".join(sorted(methods))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    if dependency_unavailable(exc):
        log.warning(
            "%s %s: dependency unavailable (%s: %s); answered 503",
            request.method,
            request.url.path,
            type(exc).__name__,
            exc,
        )
        return typed_error_response(Unavailable())
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "internal error")


def install(app: FastAPI, caller_refusal: Callable[[Request], Exception | None]) -> None:
    """`caller_refusal`: the 401/403 owed before a body that could not be parsed is refused."""
    app.state.caller_refusal = caller_refusal
    for kind in (ApiError, TokenError, CredentialsRejected, BrokerUnreachable, RefreshRejected):
        app.add_exception_handler(kind, _typed)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _unexpected)
