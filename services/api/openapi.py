"""The OpenAPI document people integrate against (issue 15).

FastAPI writes the paths and schemas from the code; this adds what it cannot know:

- a bearer security scheme (the Authorize button in /docs), required by exactly the operations
  whose dependencies read a bearer token;
- each operation's refusals in the real `{"error": {...}}` shape, with the codes it can answer
  as examples: derived from the route (a bearer token: 401; a role: 403; a path id: 404; a body
  or parameters: 422; a write: 413 and 429; a dependency: 503) plus the route-specific codes of
  services/api/operations.py;
- tags, summaries and examples (services/api/operations.py);
- typed copy settings in answers (`sizing` as the request's discriminated union, `caps`,
  `filters`), and `credentials` per broker: `POST /v1/accounts` as a union discriminated by
  `broker`, each branch with that broker's credentials model (brokers.registry), so a new
  broker shows up by itself.

Only the document changes: the wire format stays API.md's.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from brokers.registry import DESCRIPTORS
from services.api.deps import route_needs
from services.api.errors import ApiError
from services.api.examples import SCHEMA_EXAMPLES
from services.api.operations import OPERATIONS, TAGS, Operation
from services.app.sessions import RefreshReused
from services.infra.auth import TokenExpired

SCHEME = "bearer"
REF = "#/components/schemas/"
ERROR = {"$ref": REF + "ErrorBody"}
# Operations that touch no dependency (no 503 from them).
NO_DEPENDENCY = {"GET /healthz", "GET /metrics"}
PATH_NOT_FOUND = {
    "account_id": "account_not_found",
    "subscription_id": "subscription_not_found",
    "order_id": "order_not_found",
    "leg_id": "copy_not_found",
    "master_id": "master_not_found",
    "webhook_id": "webhook_not_found",
}
DESCRIPTIONS = {
    401: "No, a bad or an expired bearer token (`token_expired`: refresh and retry); "
    "wrong credentials.",
    403: "The caller's role (or the master's consent) does not allow this.",
    404: "No such resource, or not the caller's.",
    409: "Conflicts with the current state.",
    413: "The body is over the size limit (64 KiB by default).",
    422: "The request is not valid; `details.fields` names the fields.",
    429: "Too many requests or attempts; retry after `Retry-After` seconds.",
    503: "A dependency is unavailable; retry the same request after `Retry-After` seconds.",
}
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
HEADERS = {
    401: {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}},
    429: _RETRY_AFTER,
    503: _RETRY_AFTER,
}
# Messages of codes raised outside services/api/errors.py.
MESSAGES = {
    "invalid_token": "invalid token",
    TokenExpired.code: "token expired",
    "invalid_refresh_token": "invalid or expired refresh token",
    RefreshReused.code: "refresh token already used; every session of this sign-in ended",
    "invalid_json": "the request body is not valid JSON",
    "invalid_credentials": "email or password is wrong / credentials the broker refuses",
    "payload_too_large": "request bodies are limited to 65536 bytes",
    "too_many_requests": "too many requests; try again later",
}


def install_openapi(app: FastAPI) -> None:
    """Serve the completed document at /openapi.json (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                tags=TAGS,
            )
            complete(doc, dict(_route_facts(app.routes)))
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _route_facts(routes: list[Any]) -> Iterator[tuple[str, tuple[bool, bool]]]:
    """("METHOD /path", (takes a bearer token, requires a role)) of every API route."""
    pending = list(routes)
    while pending:
        route = pending.pop()
        included = getattr(route, "original_router", None)
        if included is not None:
            pending.extend(included.routes)
        elif isinstance(route, APIRoute) and route.include_in_schema:
            bearer, roles = route_needs(route.dependant)
            for method in route.methods or ():
                yield f"{method} {route.path}", (bearer, bool(roles))


def complete(doc: dict[str, Any], facts: dict[str, tuple[bool, bool]]) -> None:
    components = doc.setdefault("components", {})
    components["securitySchemes"] = {
        SCHEME: {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "`access_token` of POST /v1/auth/token or POST /v1/auth/refresh.",
        }
    }
    schemas = components.setdefault("schemas", {})
    for method, path, operation in _operations(doc):
        key = f"{method.upper()} {path}"
        bearer, role = facts.get(key, (False, False))
        described = OPERATIONS.get(key) or Operation("other", "")
        operation["tags"] = [described.tag]
        if described.summary:
            operation["summary"] = described.summary
        if bearer:
            operation["security"] = [{SCHEME: []}]
        _examples(operation, described)
        codes = _codes(key, operation, bearer, role, described)
        _errors(operation, codes)
        if key == "GET /readyz":
            _readiness(operation, described)
    _typed_copy_settings(schemas)
    _typed_credentials(schemas)
    for name, example in SCHEMA_EXAMPLES.items():
        if name in schemas:
            schemas[name]["examples"] = [example]


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc.get("paths", {}).items():
        for method, operation in item.items():
            yield method, path, operation


def _codes(
    key: str, operation: dict[str, Any], bearer: bool, role: bool, described: Operation
) -> dict[int, list[str]]:
    """The error codes an operation may answer, by status."""
    method = key.split(" ", 1)[0]
    params = operation.get("parameters", [])
    body = "requestBody" in operation
    codes: dict[int, list[str]] = {}

    def add(status: int, *names: str) -> None:
        bucket = codes.setdefault(status, [])
        bucket.extend(name for name in names if name not in bucket)

    if bearer:
        add(401, "unauthorized", "invalid_token", TokenExpired.code)
    if role:
        add(403, "forbidden")
    for param in params:
        if param.get("in") == "path" and param["name"] in PATH_NOT_FOUND:
            add(404, PATH_NOT_FOUND[param["name"]])
    if params or body:
        add(422, "validation_error", *(["invalid_json"] if body else []))
    if method != "GET":
        add(413, "payload_too_large")
        if bearer:
            add(429, "too_many_requests")
    if key not in NO_DEPENDENCY:
        add(503, "unavailable")
    for status, names in described.errors.items():
        add(status, *names)
    return codes


def _messages() -> dict[str, str]:
    out = dict(MESSAGES)
    pending: list[type[ApiError]] = [ApiError]
    while pending:
        kind = pending.pop()
        pending.extend(kind.__subclasses__())
        out.setdefault(kind.code, kind.default_message)
    return out


def _errors(operation: dict[str, Any], codes: dict[int, list[str]]) -> None:
    responses = operation.setdefault("responses", {})
    for status in [s for s in responses if s[0] in "45"]:
        del responses[status]  # only what this operation can answer, from here
    messages = _messages()
    for status in sorted(codes):
        names = codes[status]
        listed = ", ".join(f"`{name}`" for name in names)
        response: dict[str, Any] = {
            "description": f"{DESCRIPTIONS.get(status, 'Refused.')} Codes: {listed}.",
            "content": {
                "application/json": {
                    "schema": ERROR,
                    "examples": {
                        name: {
                            "summary": name,
                            "value": {"error": {"code": name, "message": messages.get(name, name)}},
                        }
                        for name in names
                    },
                }
            },
        }
        if status in HEADERS:
            response["headers"] = HEADERS[status]
        responses[str(status)] = response


def _examples(operation: dict[str, Any], described: Operation) -> None:
    if described.csv:
        ok = operation.get("responses", {}).get("200", {}).setdefault("content", {})
        ok["text/csv"] = {"schema": {"type": "string"}, "example": CSV_EXAMPLE}
    if described.request is not None:
        media = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if media is not None:
            media["example"] = described.request
    if described.response is None:
        return
    for status, response in operation.get("responses", {}).items():
        if not status.startswith("2"):
            continue
        if isinstance(described.response, str):  # a text answer (/metrics)
            text = {"schema": {"type": "string"}, "example": described.response}
            response["content"] = {"text/plain": text}
        else:
            for media in response.get("content", {}).values():
                media["example"] = described.response


CSV_EXAMPLE = "leg_id,order_id,symbol,side,qty,status\n9f8e…,a1b2…,AAPL,buy,20,filled\n"
READY = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["ready", "not_ready"]},
        "checks": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "required": ["status", "checks"],
}


def _readiness(operation: dict[str, Any], described: Operation) -> None:
    """/readyz answers its own body, 200 or 503 (not the error shape)."""
    responses = operation["responses"]
    responses["200"]["content"] = {
        "application/json": {"schema": READY, "example": described.response}
    }
    not_ready = {
        "status": "not_ready",
        "checks": {"database": "ok", "nats": "ok", "redis": "unavailable: ConnectionError"},
    }
    responses["503"] = {
        "description": "Not ready: a dependency did not answer.",
        "content": {"application/json": {"schema": READY, "example": not_ready}},
    }


def _typed_copy_settings(schemas: dict[str, Any]) -> None:
    """Answers carry the same copy settings as the requests that set them."""
    source = schemas.get("SubscriptionCreate", {}).get("properties", {})
    target = schemas.get("SubscriptionOut", {}).get("properties", {})
    if "sizing" in source and "sizing" in target:
        target["sizing"] = {k: v for k, v in source["sizing"].items() if k != "title"}
    for name, model in (("caps", "Caps"), ("filters", "Filters")):
        if name in target and model in schemas:
            target[name] = {"$ref": REF + model}


def _typed_credentials(schemas: dict[str, Any]) -> None:
    """POST /v1/accounts: one branch per broker, discriminated by `broker`, each with its
    credentials model; PATCH: any broker's credentials (the account's broker decides)."""
    create = schemas.get("AccountCreate")
    if create is None:
        return
    branches, mapping = [], {}
    for name, described in DESCRIPTORS.items():
        credentials = f"{described.credentials.__name__}"
        schemas[credentials] = described.credentials.model_json_schema(ref_template=REF + "{model}")
        branch = copy.deepcopy(create)
        branch["title"] = f"AccountCreate{name.capitalize()}"
        branch["properties"]["broker"] = {"type": "string", "enum": [name], "title": "Broker"}
        branch["properties"]["credentials"] = {"$ref": REF + credentials}
        schemas[branch["title"]] = branch
        branches.append({"$ref": REF + branch["title"]})
        mapping[name] = REF + branch["title"]
    schemas["AccountCreate"] = {
        "title": "AccountCreate",
        "description": "A broker account to link: `credentials` as `broker` needs them.",
        "oneOf": branches,
        "discriminator": {"propertyName": "broker", "mapping": mapping},
    }
    patch = schemas.get("AccountPatch", {}).get("properties", {})
    if "credentials" in patch:
        patch["credentials"] = {
            "anyOf": [*[{"$ref": ref} for ref in _credential_refs()], {"type": "null"}],
            "description": "the account's broker's credentials",
        }


def _credential_refs() -> list[str]:
    return [REF + d.credentials.__name__ for d in DESCRIPTORS.values()]
