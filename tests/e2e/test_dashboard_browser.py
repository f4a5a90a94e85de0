"""The dashboard in a real browser: Debian's Chromium driven by Playwright."""

from __future__ import annotations

import os
import time
from typing import Any

from playwright.async_api import Browser, Page, expect

from tests.conftest import ARTIFACTS
from tests.helpers import Api, Stack

PASSWORD = "correct horse"


async def sign_in(page: Page, stack: Stack, email: str, connection: str = "live") -> None:
    await page.goto(stack.api_url + "/")
    await page.get_by_label("Email", exact=True).fill(email)
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_test_id("connection")).to_have_text(connection, timeout=10_000)


def shot(name: str) -> str:
    ARTIFACTS.mkdir(exist_ok=True)
    return str(ARTIFACTS / name)


async def test_follower_sees_a_new_copy_within_two_seconds(
    api: Api, stack: Stack, browser: Browser
) -> None:
    master_id, master = await api.user("master")
    master_account, _ = await api.sim_account(master)
    email = f"follower-{os.urandom(4).hex()}@example.test"
    _, token = await api.user("follower", email=email)
    account_id, _ = await api.sim_account(token)
    await api.subscribe(token, master_id, account_id, {"mode": "multiplier", "factor": "2"})
    page = await browser.new_page(viewport={"width": 1200, "height": 800})
    errors: list[Any] = []
    page.on("pageerror", lambda error: errors.append(error))
    await sign_in(page, stack, email)
    await expect(page.get_by_role("button", name="Halt copying into sim")).to_be_visible()

    started = time.monotonic()
    order = (await api.order(master, master_account, qty="3", symbol="MSFT")).json()
    row = page.locator(f'#copies tr[data-order-id="{order["order_id"]}"]')
    await expect(row).to_be_visible(timeout=2_000)
    appeared_s = time.monotonic() - started
    await expect(row.locator(".status")).to_have_text("filled", timeout=5_000)
    await expect(row).to_contain_text("MSFT")
    await expect(row).to_contain_text("6")
    await page.screenshot(path=shot("dashboard-follower.png"))
    assert appeared_s < 2
    assert errors == []

    # Halting from the page stops the next copy, with the reason shown.
    await page.get_by_role("button", name="Halt copying into sim").click()
    await expect(page.get_by_role("button", name="Resume copying into sim")).to_be_visible()
    second = (await api.order(master, master_account, qty="1", symbol="MSFT")).json()
    halted_row = page.locator(f'#copies tr[data-order-id="{second["order_id"]}"]')
    await expect(halted_row).to_contain_text("halted", timeout=5_000)
    await page.close()


async def test_master_places_an_order_and_watches_it_settle(
    api: Api, stack: Stack, browser: Browser
) -> None:
    email = f"master-{os.urandom(4).hex()}@example.test"
    master_id, master = await api.user("master", email=email)
    await api.sim_account(master)
    for _ in range(20):
        await api.follower(master_id, {"mode": "fixed", "qty": "1"})
    page = await browser.new_page(viewport={"width": 1200, "height": 800})
    errors: list[Any] = []
    page.on("pageerror", lambda error: errors.append(error))
    await sign_in(page, stack, email)
    await page.get_by_label("Symbol", exact=True).fill("NVDA")
    await page.get_by_label("Qty", exact=True).fill("2")
    await page.get_by_test_id("place-order").click()
    first = page.locator("#orders tr").first
    await expect(first).to_contain_text("NVDA")
    await expect(first.get_by_test_id("order-status")).to_have_text("all settled", timeout=10_000)
    await expect(first).to_contain_text("20 filled")
    await expect(first).to_contain_text(" ms")
    for _ in range(3):  # a few more, so the latency chart has bars
        await page.get_by_test_id("place-order").click()
    await expect(page.get_by_test_id("order-status")).to_have_text(
        ["all settled"] * 4, timeout=15_000
    )
    assert await page.locator("#chart rect").count() == 4
    await page.screenshot(path=shot("dashboard-master.png"))
    bad = page.get_by_label("Qty", exact=True)
    await bad.fill("-1")
    await page.get_by_test_id("place-order").click()
    await expect(page.locator("#order-error")).to_contain_text("validation_error")
    assert errors == []
    await page.close()
