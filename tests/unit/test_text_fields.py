"""Every string the API takes refuses control characters (issue 18): walks the OpenAPI document
the API serves and requires, for each free-text string in a body, a query or a path, the pattern
`schemas.common.Text` declares with its validator (or a stricter one), so a field added later
with a plain `str` fails here before PostgreSQL answers a NUL with a 500."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from services.api.app import build_app
from services.infra.settings import Settings

# Strings without a pattern that never reach storage as text: the cursor is decoded into a
# timestamp and a UUID or refused with 422 invalid_cursor.
PARSED = {"GET /v1/orders query:cursor", "GET /v1/copies query:cursor"}
EXACT_FORMATS = {"uuid", "date-time"}


def _document() -> dict[str, Any]:
    settings = Settings.from_env({"COPYTRADE_JWT_SECRET": "x" * 48})
    document: dict[str, Any] = build_app(settings).openapi()
    return document


def _strings(
    schema: dict[str, Any], where: str, components: dict[str, Any], depth: int = 0
) -> Iterator[tuple[str, dict[str, Any]]]:
    assert depth < 20, where
    while "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[-1]]
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in schema.get(key, []):
            yield from _strings(sub, where, components, depth + 1)
    kind = schema.get("type")
    if kind == "string":
        yield where, schema
    for name, sub in schema.get("properties", {}).items():
        yield from _strings(sub, f"{where}.{name}", components, depth + 1)
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _strings(schema["additionalProperties"], f"{where}.*", components, depth + 1)
    if kind == "array" and isinstance(schema.get("items"), dict):
        yield from _strings(schema["items"], f"{where}[]", components, depth + 1)


def _inputs(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    components = document["components"]["schemas"]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            label = f"{method.upper()} {path}"
            for parameter in operation.get("parameters", []):
                where = f"{label} {parameter['in']}:{parameter['name']}"
                yield from _strings(parameter.get("schema", {}), where, components)
            content = operation.get("requestBody", {}).get("content", {})
            body = content.get("application/json", {}).get("schema")
            if body is not None:
                yield from _strings(body, f"{label} body", components)


def test_every_free_text_input_refuses_control_characters() -> None:
    checked, unguarded = 0, []
    for where, schema in _inputs(_document()):
        if "enum" in schema or "const" in schema or schema.get("format") in EXACT_FORMATS:
            continue
        if where in PARSED:
            continue
        checked += 1
        pattern = schema.get("pattern")
        if pattern is None or any(re.search(pattern, f"a{c}b") for c in "\x00\x07\x1b\x7f\n"):
            unguarded.append(where)
    assert not unguarded, unguarded
    assert checked >= 30, checked  # the walk still finds the API's strings
