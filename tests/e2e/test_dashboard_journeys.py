"""The dashboard's follower and master journeys in Chromium, on the real stack: every step is
a click or a keystroke on the page, checked against what the page shows (and, where the page
could lie, against the API). The admin journey: test_dashboard_admin.py."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page, expect

from tests.e2e.test_dashboard_browser import PASSWORD, shot, sign_in
from tests.helpers import Api, Stack, eventually


async def open_page(browser: Browser) -> tuple[Page, list[Any]]:
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[Any] = []
    page.on("pageerror", lambda error: errors.append(error))
    return page, errors


async def register(page: Page, stack: Stack, email: str, role: str) -> None:
    await page.goto(stack.api_url + "/")
    form = page.locator("#register-form")
    await form.get_by_label("New email").fill(email)
    await form.get_by_label("New password").fill(PASSWORD)
    await form.get_by_label("Role").select_option(role)
    await form.get_by_role("button", name="Register").click()
    await expect(page.get_by_test_id("connection")).to_have_text("live", timeout=10_000)
    await expect(page.get_by_test_id("who")).to_have_text(role)


async def link_sim_account(page: Page, api: Api) -> str:
    """Link a new simulator account from the page; its simulator account id."""
    sim = (await api.sim.post("/sim/accounts", json={"cash": "1000000"})).json()
    form = page.locator("#link-form")
    # The picker shows each broker's own credential fields.
    await form.get_by_label("Broker").select_option("kite")
    await expect(form.get_by_label("Access Token")).to_be_visible()
    await expect(form.get_by_label("Key Id")).to_have_count(0)
    await form.get_by_label("Broker").select_option("sim")
    await expect(form.get_by_label("Access Token")).to_have_count(0)
    # The API's refusal of incomplete credentials is shown.
    await form.get_by_label("Key Id").fill(sim["key_id"])
    await form.get_by_role("button", name="Link account").click()
    await expect(page.locator("#link-error")).to_contain_text("invalid_credentials")
    await form.get_by_label("Secret Key").fill(sim["secret_key"])
    await form.get_by_label("Label").fill("paper")
    await form.get_by_role("button", name="Link account").click()
    await expect(page.locator("#accounts tr")).to_contain_text(["paper"])
    return str(sim["account_id"])


async def test_follower_journey(api: Api, stack: Stack, browser: Browser) -> None:
    master_id, master = await api.user("master", copy_access="invite")
    master_account, _ = await api.sim_account(master)
    invite = await api.http.post(
        "/v1/masters/me/invites", headers=api.auth(master), json={"max_uses": 1}
    )
    assert invite.status_code == 201, invite.text
    page, errors = await open_page(browser)
    email = f"follower-{os.urandom(4).hex()}@example.test"
    await register(page, stack, email, "follower")
    sim_id = await link_sim_account(page, api)

    # Follow the master with its invite code, sized x2.
    form = page.locator("#sub-form")
    await form.get_by_label("Master ID").fill(master_id)
    await form.get_by_label("Invite code").fill(invite.json()["invite_code"])
    await form.get_by_label("Factor").fill("2")
    await form.get_by_role("button", name="Follow").click()
    row = page.locator(f'#subscriptions tr[data-master-id="{master_id}"]')
    await expect(row).to_contain_text("multiplier 2")
    await expect(row.locator(".sub-state")).to_have_text("active")

    # Settings: the API's 422 is shown next to the field it is about; a valid change is saved.
    await row.get_by_role("button", name="Settings").click()
    await form.get_by_label("Factor").fill("0")
    await form.get_by_label("Max qty").fill("-5")
    await form.get_by_label("Max signal age (ms)").fill("soon")
    await form.get_by_role("button", name="Save settings").click()
    await expect(form.locator('.field-error[data-for="caps.max_qty"]')).to_be_visible()
    await expect(form.locator('.field-error[data-for="sizing.factor"]')).to_be_visible()
    await expect(form.locator('.field-error[data-for="filters.max_signal_age_ms"]')).to_be_visible()
    await expect(page.locator("#sub-error")).to_contain_text("validation_error")
    await page.screenshot(path=shot("dashboard-journey-follower-settings.png"), full_page=True)
    await form.get_by_label("Max qty").fill("100")
    await form.get_by_label("Max signal age (ms)").fill("")
    await form.get_by_label("Sizing mode").select_option("fixed")
    await form.get_by_label("Quantity").fill("4")
    await form.get_by_role("button", name="Save settings").click()
    await expect(page.locator("#sub-error")).to_have_text("settings saved")
    await expect(row).to_contain_text("fixed 4")
    [sub] = (await api.http.get("/v1/subscriptions", headers=await _token(api, email))).json()
    assert sub["caps"]["max_qty"] == "100" and sub["sizing"]["qty"] == "4", sub

    # A copy appears live, then in the history and the P&L.
    order = (await api.order(master, master_account, qty="3", symbol="MSFT")).json()
    live = page.locator(f'#copies tr[data-order-id="{order["order_id"]}"]')
    await expect(live.locator(".status")).to_have_text("filled", timeout=10_000)
    await expect(page.locator(f'#history tr[data-order-id="{order["order_id"]}"]')).to_contain_text(
        "filled", timeout=10_000
    )
    pnl = page.locator('#pnl tr[data-symbol="MSFT"]')
    await expect(pnl.locator(".pnl-position")).to_have_text("4", timeout=10_000)
    assert await api.position(sim_id, "MSFT") == Decimal(4)
    await page.screenshot(path=shot("dashboard-journey-follower.png"), full_page=True)
    async with page.expect_download() as download_info:
        await page.get_by_role("button", name="Export CSV").click()
    download = await download_info.value
    assert download.suggested_filename == "copies.csv"
    csv_text = Path(await download.path()).read_text()
    assert csv_text.startswith("leg_id,") and order["order_id"] in csv_text, csv_text[:300]

    # Pause, then unsubscribe following the master's exits: the subscription is ending.
    await row.get_by_role("button", name="Pause").click()
    await expect(row.locator(".sub-state")).to_have_text("paused")
    await row.get_by_label(f"Positions of {master_id[:8]}").select_option("follow_exits")
    await row.get_by_role("button", name="Unsubscribe").click()
    await expect(row.locator(".sub-state")).to_have_text("ending")
    assert errors == []
    await page.close()


async def _token(api: Api, email: str) -> dict[str, str]:
    r = await api.http.post("/v1/auth/token", json={"email": email, "password": PASSWORD})
    return api.auth(r.json()["access_token"])


async def test_master_journey(api: Api, stack: Stack, browser: Browser) -> None:
    page, errors = await open_page(browser)
    email = f"master-{os.urandom(4).hex()}@example.test"
    await register(page, stack, email, "master")
    await link_sim_account(page, api)
    master_id = (await page.get_by_test_id("master-id").text_content() or "").strip()
    await expect(page.get_by_test_id("follower-count")).to_have_text("0 followers")

    # An invite from the page; a follower joins with it.
    await page.get_by_role("button", name="Create invite").click()
    code = (await page.get_by_test_id("invite-code").text_content() or "").strip()
    _, follower = await api.user("follower")
    account_id, sim_id = await api.sim_account(follower)
    joined = await api.http.post(
        "/v1/subscriptions",
        headers=api.auth(follower),
        json={
            "master_id": master_id,
            "account_id": account_id,
            "invite_code": code,
            "sizing": {"mode": "multiplier", "factor": "2"},
        },
    )
    assert joined.status_code == 201, joined.text

    # A market order fans out; the follower count and the settled chart follow.
    orders = page.locator("#order-form")
    await orders.get_by_label("Symbol", exact=True).fill("NVDA")
    await orders.get_by_label("Qty", exact=True).fill("2")
    await page.get_by_test_id("place-order").click()
    first = page.locator("#orders tr").first
    await expect(first.get_by_test_id("order-status")).to_have_text("all settled", timeout=10_000)
    await expect(page.get_by_test_id("follower-count")).to_have_text("1 follower")
    await expect(page.get_by_test_id("settled-chart")).to_have_attribute("data-total", "1")

    # A limit order far below the market rests; amend it, then cancel it.
    await orders.get_by_label("Type").select_option("limit")
    await orders.get_by_label("Limit price").fill("1")
    await page.get_by_test_id("place-order").click()
    resting = page.locator("#orders tr").first
    await expect(resting).to_contain_text("1 accepted", timeout=10_000)
    order_id = await resting.get_attribute("data-order-id")
    await resting.get_by_role("button", name="Amend").click()
    amend = page.locator("#amend-form")
    await amend.get_by_label("New qty").fill("0")
    await amend.get_by_role("button", name="Send amendment").click()
    await expect(page.locator("#amend-error")).to_contain_text("validation_error")
    await amend.get_by_label("New qty").fill("3")
    await amend.get_by_label("New limit price").fill("2")
    await amend.get_by_role("button", name="Send amendment").click()
    row = page.locator(f'#orders tr[data-order-id="{order_id}"]')
    await expect(row.locator(".order-qty")).to_have_text("3")
    await expect(row.locator(".order-limit")).to_have_text("2")

    async def copy_resized() -> dict[str, Any] | None:
        rows = (
            await api.http.get(
                "/v1/copies", headers=api.auth(follower), params={"order_id": order_id}
            )
        ).json()
        return rows[0] if rows and rows[0]["qty"] == "6" else None

    await eventually(copy_resized, timeout_s=10, message="the resting copy was not resized")
    await row.get_by_role("button", name="Cancel").click()
    await expect(row.get_by_test_id("order-status")).to_contain_text("cancel requested")
    await expect(row).to_contain_text("1 canceled", timeout=10_000)
    await expect(page.get_by_test_id("settled-chart")).to_have_attribute("data-total", "2")
    await page.screenshot(path=shot("dashboard-journey-master.png"), full_page=True)
    assert await api.position(sim_id, "NVDA") == Decimal(4)
    assert errors == []
    await page.close()


async def test_a_refused_session_signs_out_and_sign_out_forgets_it(
    api: Api, stack: Stack, browser: Browser
) -> None:
    """A 401 the page cannot refresh its way out of (a forged access token, a refresh token the
    API refuses, or no refresh route at all) ends in the sign-in form; Sign out forgets the
    session."""
    email = f"follower-{os.urandom(4).hex()}@example.test"
    await api.user("follower", email=email)
    page, errors = await open_page(browser)
    await sign_in(page, stack, email)
    await page.evaluate(
        """() => {
            const key = "copytrade.session";
            const access = JSON.parse(sessionStorage.getItem(key)).access;
            const tail = access.endsWith("AAAA") ? "BBBB" : "AAAA";
            const forged = access.slice(0, -4) + tail;
            sessionStorage.setItem(key, JSON.stringify({ access: forged, refresh: "spent" }));
        }"""
    )
    await page.reload()
    await expect(page.get_by_test_id("connection")).to_have_text(
        "session expired, please sign in again"
    )
    await expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert await page.evaluate('sessionStorage.getItem("copytrade.session")') is None

    await sign_in(page, stack, email)
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_test_id("connection")).to_have_text("signed out")
    await expect(page.locator("#follower-view")).to_be_hidden()
    assert await page.evaluate('sessionStorage.getItem("copytrade.session")') is None
    await page.reload()
    await expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert errors == []
    await page.close()
