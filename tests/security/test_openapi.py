"""The OpenAPI document people integrate against (issue 15): every operation has a tag, a
written summary, its security where a token is needed (checked against the running API: no
token → 401), its refusals in the real error shape with codes, and examples that validate;
sizing and credentials are discriminated unions, caps and filters typed objects."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from jsonschema_rs import Draft202012Validator

from brokers.registry import DESCRIPTORS
from services.api.app import build_app
from services.api.operations import OPERATIONS, TAGS
from services.infra.settings import Settings
from tests.security.conftest import AppFactory, Client, random_address

REF = "#/components/schemas/"
PUBLIC = {
    "POST /v1/auth/register",
    "POST /v1/auth/token",
    "POST /v1/auth/refresh",
    "POST /v1/auth/logout",
    "GET /healthz",
    "GET /readyz",
    "GET /metrics",
    "GET /v1/brokers",  # the public catalogue of brokers and their credential fields
}


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    document: dict[str, Any] = build_app(Settings.from_env({})).openapi()
    return document


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (f"{method.upper()} {path}", path, operation)
        for path, item in doc["paths"].items()
        for method, operation in item.items()
    ]


def _valid(doc: dict[str, Any], schema: dict[str, Any], value: Any) -> list[str]:
    wrapper = {**schema, "components": doc["components"]}
    return [str(e) for e in Draft202012Validator(wrapper).iter_errors(value)]


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].removeprefix(REF)]
    return schema


def _has_example(doc: dict[str, Any], media: dict[str, Any]) -> bool:
    if "example" in media or "examples" in media:
        return True
    pending = [media.get("schema", {})]
    while pending:
        schema = _resolve(doc, pending.pop())
        if "examples" in schema:
            return True
        pending.extend(schema.get("anyOf", []) + schema.get("oneOf", []))
        if "items" in schema:
            pending.append(schema["items"])
    return False


def test_every_operation_is_described(doc: dict[str, Any]) -> None:
    tags = {tag["name"] for tag in TAGS}
    operations = _operations(doc)
    assert len(operations) >= 35
    for key, _, operation in operations:
        assert key in OPERATIONS, f"{key} has no entry in services/api/operations.py"
        assert operation["summary"] == OPERATIONS[key].summary, key
        assert len(operation["tags"]) == 1 and operation["tags"][0] in tags, key
    assert set(OPERATIONS) == {key for key, _, _ in operations}, "stale entries"


def test_bearer_security_scheme_on_exactly_the_routes_that_need_a_token(
    doc: dict[str, Any],
) -> None:
    scheme = doc["components"]["securitySchemes"]["bearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for key, _, operation in _operations(doc):
        if key in PUBLIC:
            assert "security" not in operation, key
        else:
            assert operation["security"] == [{"bearer": []}], key
            assert "401" in operation["responses"], key


def test_every_refusal_is_the_error_schema_with_its_codes(doc: dict[str, Any]) -> None:
    error_body = {"$ref": REF + "ErrorBody"}
    for key, _, operation in _operations(doc):
        responses = operation["responses"]
        assert not any("HTTPValidationError" in str(r) for r in responses.values()), (
            f"{key}: FastAPI's default 422"
        )
        if key not in {"GET /healthz", "GET /metrics"}:
            assert "503" in responses, key
        if "parameters" in operation or "requestBody" in operation:
            assert "422" in responses, key
        if key.startswith(("POST", "PATCH", "DELETE")):
            assert "413" in responses, key
        for status, response in responses.items():
            if status[0] not in "45" or key == "GET /readyz":
                continue
            media = response["content"]["application/json"]
            assert media["schema"] == error_body, (key, status)
            codes = re.findall(r"`([a-z_]+)`", response["description"].split("Codes:")[1])
            assert codes and set(codes) == set(media["examples"]), (key, status)
            for example in media["examples"].values():
                assert not _valid(doc, error_body, example["value"]), (key, status)
    # The route-specific codes are where they belong.
    assert "refresh_token_reused" in str(doc["paths"]["/v1/auth/refresh"]["post"]["responses"])
    assert "idempotency_conflict" in str(doc["paths"]["/v1/orders"]["post"]["responses"]["409"])
    assert "invite_required" in str(doc["paths"]["/v1/subscriptions"]["post"]["responses"]["403"])


def test_examples_everywhere_and_valid(doc: dict[str, Any]) -> None:
    for key, _, operation in _operations(doc):
        body = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if body is not None:
            assert "example" in body, key
            assert not _valid(doc, body["schema"], body["example"]), key
        for status, response in operation["responses"].items():
            for kind, media in response.get("content", {}).items():
                if status.startswith("2"):
                    assert _has_example(doc, media), (key, status, kind)
                if "example" in media and kind == "application/json":
                    assert not _valid(doc, media["schema"], media["example"]), (key, status)
    for name, schema in doc["components"]["schemas"].items():
        for example in schema.get("examples", []):
            assert not _valid(doc, {"$ref": REF + name}, example), name


def test_copy_settings_and_credentials_are_typed(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    for model in ("SubscriptionCreate", "SubscriptionOut"):
        properties = schemas[model]["properties"]
        sizing = properties["sizing"]
        assert sizing["discriminator"]["propertyName"] == "mode"
        assert len(sizing["oneOf"]) == 5
        assert set(sizing["discriminator"]["mapping"]) == {
            "fixed",
            "multiplier",
            "equity_ratio",
            "notional",
            "risk_percent",
        }
        assert properties["caps"]["$ref"] == REF + "Caps"
        assert properties["filters"]["$ref"] == REF + "Filters"
    assert "daily_loss_limit" in schemas["Caps"]["properties"]
    assert "symbols_allow" in schemas["Filters"]["properties"]

    account = schemas["AccountCreate"]
    assert account["discriminator"]["propertyName"] == "broker"
    assert set(account["discriminator"]["mapping"]) == set(DESCRIPTORS)
    assert len(account["oneOf"]) == len(DESCRIPTORS)
    for broker, ref in account["discriminator"]["mapping"].items():
        branch = _resolve(doc, {"$ref": ref})
        assert branch["properties"]["broker"]["enum"] == [broker]
        credentials = _resolve(doc, branch["properties"]["credentials"])
        expected = DESCRIPTORS[broker].credentials.model_json_schema()
        assert credentials["properties"] == expected["properties"], broker
        assert credentials["additionalProperties"] is False
    sim = {"broker": "sim", "label": "x", "credentials": {"key_id": "a", "secret_key": "b"}}
    assert not _valid(doc, {"$ref": REF + "AccountCreate"}, sim)
    kite_on_sim = {**sim, "credentials": {"api_key": "a", "access_token": "b"}}
    assert _valid(doc, {"$ref": REF + "AccountCreate"}, kite_on_sim)


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)


async def test_secured_operations_refuse_a_caller_without_a_token_and_public_ones_do_not(
    api_app: AppFactory,
) -> None:
    async with api_app() as app:
        client = Client(app, random_address())
        document = app.openapi()
        for key, path, operation in _operations(document):
            method = key.split(" ")[0]
            example = (
                operation.get("requestBody", {})
                .get("content", {})
                .get("application/json", {})
                .get("example")
            )
            r = await client.http.request(method, _concrete(path), json=example)
            if "security" in operation:
                assert r.status_code == 401, (key, r.status_code, r.text)
                assert r.json()["error"]["code"] == "unauthorized"
            else:
                assert r.status_code != 401 or key in {
                    "POST /v1/auth/token",
                    "POST /v1/auth/refresh",
                }, key
            assert str(r.status_code) in operation["responses"], (key, r.status_code, r.text)
