"""The page's session in Chromium with short-lived access tokens (30 s, the smallest the settings
allow): it refreshes silently before the first token runs out, keeps working after the server
refuses that token, survives a reload on the rotated tokens, and signing out revokes them. A
stack of its own, so the short token lifetime touches no other test."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from playwright.async_api import Browser, expect

from tests.e2e.test_dashboard_browser import sign_in
from tests.e2e.test_dashboard_journeys import link_sim_account, open_page
from tests.helpers import Api, Stack, eventually

TTL_S = 30


@pytest.fixture(scope="module")
def stack(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(
        service_env,
        Path(tmp_path_factory.mktemp("sessions")),
        workers=1,
        overrides={"COPYTRADE_ACCESS_TOKEN_TTL_S": str(TTL_S)},
    ).start()
    try:
        yield s
    finally:
        s.stop()


async def test_the_page_refreshes_silently_and_signing_out_revokes(
    api: Api, stack: Stack, browser: Browser
) -> None:
    email = f"follower-{os.urandom(4).hex()}@example.test"
    await api.user("follower", email=email)
    page, errors = await open_page(browser)
    refreshes: list[str] = []
    page.on(
        "request", lambda r: refreshes.append(r.url) if r.url.endswith("/v1/auth/refresh") else None
    )
    await sign_in(page, stack, email)

    async def stored() -> dict[str, str]:
        raw = await page.evaluate("sessionStorage.getItem('copytrade.session')")
        return dict(json.loads(raw)) if raw else {}

    first = await stored()
    expires_at = jwt.decode(first["access"], options={"verify_signature": False})["exp"]
    assert expires_at - time.time() <= TTL_S + 1

    # Before the first token runs out the page has swapped both tokens, without a sign-in.
    async def rotated() -> dict[str, str] | None:
        now = await stored()
        return now if now and now["access"] != first["access"] else None

    second = await eventually(
        rotated, timeout_s=TTL_S + 5, interval_s=0.5, message="no silent refresh"
    )
    assert second["refresh"] != first["refresh"]
    assert time.time() < expires_at, "the refresh came only after the token had expired"
    assert refreshes, "the page never called POST /v1/auth/refresh"

    # Once the server refuses the first token, the page still acts as the same user.
    while time.time() < expires_at + 6:  # the server allows 5 s of clock skew
        await page.wait_for_timeout(250)
    old = await api.http.get("/v1/accounts", headers=api.auth(first["access"]))
    assert old.status_code == 401 and old.json()["error"]["code"] == "token_expired"
    await expect(page.get_by_test_id("who")).to_have_text("follower")
    await link_sim_account(page, api)

    # A reload resumes on the rotated tokens; the spent refresh token is refused as a reuse.
    await page.reload()
    await expect(page.get_by_test_id("who")).to_have_text("follower")
    await expect(page.get_by_test_id("connection")).to_have_text("live", timeout=10_000)
    reuse = await api.http.post("/v1/auth/refresh", json={"refresh_token": first["refresh"]})
    assert reuse.status_code == 401
    assert reuse.json()["error"]["code"] == "refresh_token_reused"

    # Signing out clears the page; signing in again and out revokes that new session too.
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_test_id("connection")).to_have_text("signed out")
    assert await stored() == {}
    await sign_in(page, stack, email)
    current = await stored()
    assert current["refresh"] not in (first["refresh"], second["refresh"])
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_test_id("connection")).to_have_text("signed out")
    after = await api.http.post("/v1/auth/refresh", json={"refresh_token": current["refresh"]})
    assert after.status_code == 401, after.text
    assert after.json()["error"]["code"] == "invalid_refresh_token"
    assert not errors, errors
    await page.close()
