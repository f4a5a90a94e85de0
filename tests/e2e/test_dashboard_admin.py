"""The admin's dashboard journey in Chromium (halt + flatten, a failed copy retried, a
dead-lettered order), and the admin listings and broker catalogue it reads. A stack of its own:
few delivery attempts and a short ack wait (an order dead-letters in seconds), a fast sweeper,
and global halts that cannot disturb the other end-to-end tests."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, expect
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.infra.auth import hash_password
from services.infra.db.repositories.users import create_user
from tests.e2e.test_dashboard_browser import PASSWORD, shot, sign_in
from tests.helpers import Api, Stack, eventually


@pytest.fixture(scope="module")
def stack(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(
        service_env,
        Path(tmp_path_factory.mktemp("admin")),
        workers=1,
        overrides={
            "COPYTRADE_MAX_DELIVER": "3",
            "COPYTRADE_CONSUMER_ACK_WAIT_S": "1",
            "COPYTRADE_MAX_LEG_ATTEMPTS": "1",
            "COPYTRADE_UNKNOWN_RECHECK_S": "0.3",
            "COPYTRADE_RESEND_GRACE_S": "0.5",
            "COPYTRADE_POLL_INTERVAL_S": "0.5",
            "COPYTRADE_OPEN_LEG_REFRESH_S": "0.5",
        },
    ).start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
async def admin_email(engine: AsyncEngine) -> str:
    email = f"admin-{uuid.uuid4().hex[:8]}@example.test"
    async with engine.begin() as conn:
        await create_user(conn, str(uuid.uuid4()), email, hash_password(PASSWORD, 1024), "admin")
    return email


async def _copy(api: Api, token: str, order_id: str) -> dict[str, Any]:
    rows = (
        await api.http.get("/v1/copies", headers=api.auth(token), params={"order_id": order_id})
    ).json()
    return rows[0] if rows else {}


async def _dead_letter(api: Api, engine: AsyncEngine) -> str:
    """An order whose master's stored credentials no longer open: planning fails on every
    delivery until the order is dead-lettered (as in test_stuck)."""
    master_id, master = await api.user("master")
    account_id, _ = await api.sim_account(master)
    await api.follower(master_id, {"mode": "multiplier", "factor": "1"})
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE accounts SET credentials = :c WHERE id = :a"),
            {"c": b"not a ciphertext", "a": account_id},
        )
    return str((await api.order(master, account_id, symbol="DLQ")).json()["order_id"])


async def test_admin_journey(
    api: Api, stack: Stack, engine: AsyncEngine, browser: Browser, admin_email: str
) -> None:
    dead_order = await _dead_letter(api, engine)
    master_id, master = await api.user("master")
    master_account, _ = await api.sim_account(master)
    follower = await api.follower(master_id, {"mode": "multiplier", "factor": "1"})
    sim_id = follower["sim_account_id"]
    # The follower's broker fails every request: its copy goes in doubt.
    await api.sim.put("/sim/faults", params={"account_id": sim_id}, json={"error_rate": 1})
    symbol = "AD" + os.urandom(2).hex().upper()
    order_id = (await api.order(master, master_account, symbol=symbol, qty="7")).json()["order_id"]

    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[Any] = []
    page.on("pageerror", lambda error: errors.append(error))
    await sign_in(page, stack, admin_email, connection="polling")
    in_doubt = page.locator(f'#in-doubt-legs tr[data-order-id="{order_id}"]')
    await expect(in_doubt).to_contain_text("unknown", timeout=15_000)
    leg_id = await in_doubt.get_attribute("data-leg-id")
    # Then it failed for good (a definitive refusal, say revoked keys), as in test_stuck.
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE legs SET status = 'failed', reason = 'unauthorized', settled_at = now(), "
                "lease_expires_at = NULL WHERE id = :id"
            ),
            {"id": leg_id},
        )
        await conn.execute(
            text("UPDATE copy_positions SET qty = qty - 7 WHERE account_id = :a AND symbol = :s"),
            {"a": follower["account_id"], "s": symbol},
        )
    await api.sim.put("/sim/faults", params={"account_id": sim_id}, json={"error_rate": 0})
    failed = page.locator(f'#failed-legs tr[data-leg-id="{leg_id}"]')
    await expect(failed).to_contain_text("unauthorized")

    # The dead-lettered order is listed with its reason.
    dead = page.locator(f'#dead-letters tr[data-order-id="{dead_order}"]')
    await expect(dead).to_contain_text("CredentialError", timeout=20_000)

    # Retry the failed copy from the page: it leaves the list, and is placed once.
    await failed.get_by_role("button", name="Retry").click()
    await expect(failed).to_have_count(0)

    async def filled() -> dict[str, Any] | None:
        copy = await _copy(api, follower["token"], order_id)
        return copy if copy.get("status") == "filled" else None

    await eventually(filled, timeout_s=15, message="the retried copy was not placed")
    assert await api.position(sim_id, symbol) == Decimal(7)

    # Halt the master and flatten: its followers' copied positions are closed.
    await page.get_by_label("Master ID (empty: everyone)").fill(master_id)
    await page.get_by_label("flatten", exact=False).check()
    await page.get_by_role("button", name="Halt", exact=True).click()
    await expect(page.get_by_test_id("halt-out")).to_contain_text(
        f"master:{master_id}: halted, flattening"
    )
    halt_row = page.locator(f'#halts tr[data-scope="master:{master_id}"]')
    await expect(halt_row).to_be_visible()

    async def flat() -> bool:
        return await api.position(sim_id, symbol) == 0

    await eventually(flat, timeout_s=15, message="the master's copies were not flattened")
    await page.screenshot(path=shot("dashboard-admin.png"), full_page=True)
    await halt_row.get_by_role("button", name=f"Resume master:{master_id}").click()
    await expect(halt_row).to_have_count(0)

    # A global halt, without flatten, and its resume.
    await page.get_by_label("Master ID (empty: everyone)").fill("")
    await page.get_by_label("flatten", exact=False).uncheck()
    await page.get_by_role("button", name="Halt", exact=True).click()
    await expect(page.locator('#halts tr[data-scope="global"]')).to_be_visible()
    await page.get_by_role("button", name="Resume", exact=True).click()
    await expect(page.locator('#halts tr[data-scope="global"]')).to_have_count(0)
    assert errors == []
    await page.close()


async def test_admin_listings_are_for_admins_only(api: Api, admin_email: str) -> None:
    _, follower = await api.user("follower")
    for path in ("/v1/admin/legs", "/v1/admin/orders/dead-lettered"):
        r = await api.http.get(path, headers=api.auth(follower))
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", r.text
    token = (
        await api.http.post("/v1/auth/token", json={"email": admin_email, "password": PASSWORD})
    ).json()["access_token"]
    r = await api.http.get("/v1/admin/legs", headers=api.auth(token), params={"kind": "stuck"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error", r.text
    r = await api.http.get("/v1/admin/legs", headers=api.auth(token), params={"limit": 1})
    assert r.status_code == 200 and len(r.json()) <= 1, r.text


async def test_brokers_describe_their_credentials(api: Api) -> None:
    r = await api.http.get("/v1/brokers")
    assert r.status_code == 200, r.text
    brokers = {b["name"]: b["credentials"] for b in r.json()}
    assert set(brokers) == {"sim", "alpaca", "binance", "kite"}
    assert brokers["sim"]["required"] == ["key_id", "secret_key"]
    assert set(brokers["kite"]["properties"]) >= {"api_key", "access_token"}
    assert brokers["alpaca"]["properties"]["paper"]["type"] == "boolean"
