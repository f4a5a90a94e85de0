"""Every input answers a 4xx (issue 18): control characters, loose types, padded decimals,
role before body, bodies that are not UTF-8, 405 with Allow; and no log line carries a
submitted email or password in full. Real API against its own PostgreSQL."""

from __future__ import annotations

import os
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.e2e.test_api import _assert_error, _counts
from tests.helpers import Api, Stack

CONTROL = ["\u0000", "\u0007", "\u001b", "\u007f", "\n"]


def _field(response: Any) -> str:
    return str(response.json()["error"]["details"]["fields"][0]["field"])


@pytest.mark.parametrize("char", CONTROL)
async def test_control_characters_in_emails_are_422_without_a_token(
    api: Api, engine: AsyncEngine, char: str
) -> None:
    before = await _counts(engine)
    email = f"nul{char}user-{os.urandom(4).hex()}@example.test"
    for path, body in (
        ("/v1/auth/register", {"email": email, "password": "correct horse", "role": "master"}),
        ("/v1/auth/token", {"email": email, "password": "correct horse"}),
        ("/v1/auth/token", {"email": "a@example.test", "password": f"pass{char}word"}),
    ):
        response = await api.http.post(path, json=body)
        _assert_error(response, 422, "control_character")
        assert _field(response) in ("email", "password")
    assert await _counts(engine) == before


async def test_control_characters_in_labels_credentials_and_symbols(
    api: Api, engine: AsyncEngine
) -> None:
    master_id, _ = await api.user("master")
    _, token = await api.user("follower")
    account_id, _ = await api.sim_account(token)
    before = await _counts(engine)
    for body, field in (
        (
            {
                "broker": "sim",
                "label": "a\u0000b",
                "credentials": {"key_id": "k", "secret_key": "s"},
            },
            "label",
        ),
        (
            {
                "broker": "sim",
                "label": "ok",
                "credentials": {"key_id": "k\u0000", "secret_key": "s"},
            },
            "credentials",
        ),
    ):
        response = await api.http.post("/v1/accounts", headers=api.auth(token), json=body)
        _assert_error(response, 422, "control_character")
        assert _field(response).startswith(field)
    for filters in ({"symbols_allow": ["AA\u0000PL"]}, {"symbols_block": ["X\u0001"]}):
        body = {
            "master_id": master_id,
            "account_id": account_id,
            "sizing": {"mode": "fixed", "qty": "1"},
            "filters": filters,
        }
        response = await api.http.post("/v1/subscriptions", headers=api.auth(token), json=body)
        _assert_error(response, 422, "control_character")
        assert _field(response).startswith("filters.symbols_")
    assert await _counts(engine) == before


async def test_control_characters_in_a_relabel_and_a_webhook_url(
    api: Api, engine: AsyncEngine
) -> None:
    _, token = await api.user("follower")
    account_id, _ = await api.sim_account(token)
    before = await _counts(engine)
    response = await api.http.patch(
        f"/v1/accounts/{account_id}", headers=api.auth(token), json={"label": "re\u0000named"}
    )
    _assert_error(response, 422, "control_character")
    assert _field(response) == "label"
    response = await api.http.patch(
        f"/v1/accounts/{account_id}",
        headers=api.auth(token),
        json={"credentials": {"key_id": "k\u0007", "secret_key": "s"}},
    )
    _assert_error(response, 422, "invalid_credentials")  # the broker's typed model says no
    for url in ("https://hooks.example.test/a\u0000b", "https://hooks.exa\u0000mple.test/"):
        response = await api.http.post(
            "/v1/webhooks", headers=api.auth(token), json={"url": url, "events": ["leg.failed"]}
        )
        _assert_error(response, 422, "control_character")
        assert _field(response) == "url"
    assert await _counts(engine) == before
    accounts = (await api.http.get("/v1/accounts", headers=api.auth(token))).json()
    assert [a["label"] for a in accounts] == ["sim"]


LOOSE_PATCHES = [
    {"paused": "yes"},
    {"paused": 1},
    {"filters": {"reverse": "1"}},
    {"filters": {"max_signal_age_ms": "5"}},
    {"filters": {"max_signal_age_ms": 5.0}},
    {"caps": {"max_open_positions": 2.0}},
    {"caps": {"max_orders_per_day": "3"}},
    {"caps": {"max_qty": " 1 "}},
    {"sizing": {"mode": "fixed", "qty": " 1 "}},
    {"sizing": {"mode": "fixed", "qty": "1 "}},
]


async def test_loose_types_are_refused(api: Api) -> None:
    master_id, _ = await api.user("master")
    follower = await api.follower(master_id, {"mode": "fixed", "qty": "1"})
    subs = (await api.http.get("/v1/subscriptions", headers=api.auth(follower["token"]))).json()
    path = f"/v1/subscriptions/{subs[0]['subscription_id']}"
    for patch in LOOSE_PATCHES:
        response = await api.http.patch(path, headers=api.auth(follower["token"]), json=patch)
        _assert_error(response, 422, "validation_error")
    # The strict forms still work.
    ok = await api.http.patch(
        path,
        headers=api.auth(follower["token"]),
        json={"paused": True, "filters": {"reverse": False, "max_signal_age_ms": 5000}},
    )
    assert ok.status_code == 200, ok.text
    _, master = await api.user("master")
    account, _ = await api.sim_account(master)
    _assert_error(await api.order(master, account, qty=" 1 "), 422, "validation_error")


async def test_role_and_token_come_before_the_body(api: Api) -> None:
    _, follower = await api.user("follower")
    _, master = await api.user("master")
    bad_order = {"qty": "-1", "surprise": True}
    response = await api.http.post("/v1/orders", headers=api.auth(follower), json=bad_order)
    _assert_error(response, 403, "forbidden")
    _assert_error(await api.http.post("/v1/orders", json=bad_order), 401, "unauthorized")
    response = await api.http.patch(
        "/v1/orders/not-a-uuid", headers=api.auth(follower), json={"qty": "x"}
    )
    _assert_error(response, 403, "forbidden")
    response = await api.http.post(
        "/v1/subscriptions", headers=api.auth(master), json={"sizing": "nonsense"}
    )
    _assert_error(response, 403, "forbidden")
    response = await api.http.get("/v1/copies?order_id=nope", headers=api.auth(master))
    _assert_error(response, 403, "forbidden")


async def test_invalid_utf8_is_invalid_json(api: Api) -> None:
    _, master = await api.user("master")
    for headers in ({}, api.auth(master)):
        response = await api.http.post(
            "/v1/orders",
            content=b'{"symbol": "\xff\xfe"}',
            headers={**headers, "content-type": "application/json"},
        )
        if headers:
            _assert_error(response, 422, "invalid_json")
        else:
            _assert_error(response, 401, "unauthorized")
    response = await api.http.post(
        "/v1/auth/token", content=b"\xc3\x28", headers={"content-type": "application/json"}
    )
    _assert_error(response, 422, "invalid_json")


async def test_who_is_asking_comes_before_a_body_that_is_not_json(api: Api) -> None:
    """FastAPI parses the body before it solves dependencies; the caller is still judged first."""
    _, master = await api.user("master")
    _, follower = await api.user("follower")

    async def post(path: str, headers: dict[str, str]) -> Any:
        return await api.http.post(
            path, content=b"{not json", headers={"content-type": "application/json", **headers}
        )

    _assert_error(await post("/v1/orders", {}), 401, "unauthorized")
    _assert_error(await post("/v1/orders", {"authorization": "Bearer nope"}), 401, "invalid_token")
    _assert_error(await post("/v1/orders", api.auth(follower)), 403, "forbidden")
    _assert_error(await post("/v1/orders", api.auth(master)), 422, "invalid_json")
    _assert_error(await post("/v1/subscriptions", {}), 401, "unauthorized")
    # Routes that take no token still answer 422 to a body that is not JSON.
    _assert_error(await post("/v1/auth/token", {}), 422, "invalid_json")


async def test_405_carries_allow(api: Api) -> None:
    response = await api.http.put("/v1/orders")
    _assert_error(response, 405, "method_not_allowed")
    assert set(response.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


async def test_no_log_line_carries_a_submitted_email_or_password(api: Api, stack: Stack) -> None:
    marker = os.urandom(5).hex()
    email = f"secret-{marker}@example.test"
    password = f"pw-{marker}-long"
    await api.http.post(
        "/v1/auth/register",
        json={"email": email + "\u0000", "password": password, "role": "master"},
    )
    await api.http.post(
        "/v1/auth/register", json={"email": email, "password": password, "role": "master"}
    )
    await api.http.post("/v1/auth/token", json={"email": email, "password": password + "x"})
    await api.http.post(
        "/v1/auth/register", json={"email": email, "password": password, "role": "master"}
    )  # 409
    # Broker credentials: well formed (linked, then used on a relabel), with an unknown field,
    # with a control character.
    _, token = await api.user("follower")
    account_id, _ = await api.sim_account(token)
    for credentials in (
        {"key_id": f"key-{marker}", "secret_key": f"secret-{marker}"},
        {"key_id": f"key-{marker}", "secret_key": f"secret-{marker}", "extra": marker},
        {"key_id": f"key-{marker}\u0000", "secret_key": f"secret-{marker}"},
    ):
        response = await api.http.post(
            "/v1/accounts",
            headers=api.auth(token),
            json={"broker": "sim", "label": "x", "credentials": credentials},
        )
        assert response.status_code < 500 and marker not in response.text, response.text
        response = await api.http.patch(
            f"/v1/accounts/{account_id}", headers=api.auth(token), json={"credentials": credentials}
        )
        assert response.status_code < 500 and marker not in response.text, response.text
    logs = "".join(
        path.read_text(errors="replace") for path in stack.log_dir.glob("*.log") if path.is_file()
    )
    assert marker not in logs
