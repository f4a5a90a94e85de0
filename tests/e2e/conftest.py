from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright
from sqlalchemy.ext.asyncio import AsyncEngine

from services.dev.embedded import free_port
from services.infra.db.engine import make_engine
from tests.helpers import Api, Stack, listening, wait_until

BROKERS = ("alpaca", "binance", "kite")


@pytest.fixture(scope="package")
def brokers_venue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Alpaca, Binance and Kite on loopback, refusing every key as each documents it
    (tests/e2e/venue.py)."""
    port = free_port()
    log = open(tmp_path_factory.mktemp("venue") / "venue.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.e2e.venue", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(lambda: listening(port), message="the brokers' venue not listening")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)
        log.close()


@pytest.fixture(scope="package")
def stack(
    service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory, brokers_venue: str
) -> Iterator[Stack]:
    s = Stack(
        service_env,
        Path(tmp_path_factory.mktemp("e2e")),
        workers=2,
        overrides={
            # Linking alpaca/binance/kite keys reaches a venue that refuses them (422), as the
            # real brokers would; the fuzzer generates well-formed keys of every broker.
            "COPYTRADE_BROKER_URLS": json.dumps({b: brokers_venue for b in BROKERS}),
            "COPYTRADE_EQUITY_MAX_AGE_S": "0.2",
            "COPYTRADE_OPEN_LEG_REFRESH_S": "0.5",
            "COPYTRADE_POLL_INTERVAL_S": "0.5",
            # Small shards and batches: a 200-follower order is four shards over two workers.
            "COPYTRADE_SHARD_SIZE": "60",
            "COPYTRADE_BATCH_SIZE": "25",
            "COPYTRADE_FIRST_BATCH": "5",
            # Webhook retries in fractions of a second (a receiver that fails twice).
            "COPYTRADE_WEBHOOK_BACKOFF_S": "0.2",
            "COPYTRADE_WEBHOOK_BACKOFF_MAX_S": "1",
            "COPYTRADE_WEBHOOK_MAX_ATTEMPTS": "4",
        },
    ).start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
async def engine(stack: Stack) -> AsyncIterator[AsyncEngine]:
    """The database of the stack under test (each stack has its own)."""
    eng = make_engine(stack.env["COPYTRADE_DATABASE_URL"], pool_size=3, max_overflow=2)
    try:
        yield eng
    finally:
        await eng.dispose()


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[Api]:
    client = Api(stack.api_url, stack.sim_url)
    try:
        yield client
    finally:
        await client.aclose()


CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright (the dashboard tests)."""
    async with async_playwright() as playwright:
        instance = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            yield instance
        finally:
            await instance.close()
