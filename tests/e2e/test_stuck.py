"""Nothing silently stuck: an order whose message runs out of delivery attempts is dead-lettered
(recorded on the order, shown by GET /v1/orders/{id}, counted in a metric), and a failed copy can
be retried, exactly once. A stack of its own: few delivery attempts, short ack wait, a leg fails
after one attempt, and one replicator whose metrics endpoint the test reads."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.dev.embedded import free_port
from services.dev.processes import Child
from tests.helpers import Api, Stack, eventually

MAX_DELIVER = 3


@pytest.fixture(scope="module")
def stack(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(
        service_env,
        Path(tmp_path_factory.mktemp("stuck")),
        workers=0,
        overrides={
            "COPYTRADE_MAX_DELIVER": str(MAX_DELIVER),
            "COPYTRADE_CONSUMER_ACK_WAIT_S": "1",
            "COPYTRADE_MAX_LEG_ATTEMPTS": "1",
            "COPYTRADE_UNKNOWN_RECHECK_S": "0.3",
            "COPYTRADE_RESEND_GRACE_S": "0.5",
            "COPYTRADE_POLL_INTERVAL_S": "0.5",
            # accept_then_timeout: the simulator places the order, then holds the answer past
            # our read timeout (the order is at the broker; we do not know it).
            "COPYTRADE_SIM_TIMEOUT_HOLD_S": "3",
            "COPYTRADE_BROKER_READ_TIMEOUT_S": "1",
        },
    ).start()
    try:
        port = free_port()
        worker = Child(
            "replicator-1",
            "services.worker.replicator",
            {**s.env, "COPYTRADE_METRICS_PORT": str(port)},
            s.log_dir / "replicator-1.log",
        )
        worker.start()
        s.children.append(worker)
        s.env = {**s.env, "TEST_REPLICATOR_METRICS": f"http://127.0.0.1:{port}/metrics"}
        yield s
    finally:
        s.stop()


async def _metric(url: str, line_start: str) -> float | None:
    async with httpx.AsyncClient(timeout=5) as http:
        try:
            body = (await http.get(url)).text
        except httpx.HTTPError:
            return None
    for line in body.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_an_order_that_always_fails_is_dead_lettered(
    api: Api, stack: Stack, engine: AsyncEngine
) -> None:
    master_id, master = await api.user("master")
    account_id, _ = await api.sim_account(master)
    await api.follower(master_id, {"mode": "multiplier", "factor": "1"})
    # The master's stored credentials no longer decrypt (say, their key was retired): planning
    # fails on every delivery, deterministically, with the real components.
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE accounts SET credentials = :c WHERE id = :a"),
            {"c": b"not a ciphertext", "a": account_id},
        )
    metric = 'copytrade_orders_dead_lettered_total{stream="ORDERS"}'
    before = await _metric(stack.env["TEST_REPLICATOR_METRICS"], metric) or 0.0
    order_id = (await api.order(master, account_id, symbol="DLQ")).json()["order_id"]

    async def dead_lettered() -> dict[str, Any] | None:
        r = await api.http.get(f"/v1/orders/{order_id}", headers=api.auth(master))
        body: dict[str, Any] = r.json()
        return body if body["status"] == "dead_lettered" else None

    body = await eventually(dead_lettered, timeout_s=30, message="order not dead-lettered")
    assert body["dead_lettered_at"] is not None and body["legs"]["total"] == 0
    after = await _metric(stack.env["TEST_REPLICATOR_METRICS"], metric)
    assert after == before + 1
    async with engine.connect() as conn:
        reason = (
            await conn.execute(
                text("SELECT dead_letter_reason FROM master_orders WHERE id = :id"),
                {"id": order_id},
            )
        ).scalar_one()
    assert "CredentialError" in reason
    # An order that works is not dead-lettered: the field stays null.
    _, healthy = await api.user("master")
    healthy_account, _ = await api.sim_account(healthy)
    good = (await api.order(healthy, healthy_account, symbol="DLQ")).json()["order_id"]
    settled = await api.settled(healthy, good)
    assert settled["status"] == "replicated" and settled["dead_lettered_at"] is None


async def _copy(api: Api, follower: dict[str, str], order_id: str) -> dict[str, Any]:
    """The follower's copy of the order ({} until it is recorded)."""
    rows = (
        await api.http.get(
            "/v1/copies", headers=api.auth(follower["token"]), params={"order_id": order_id}
        )
    ).json()
    assert len(rows) <= 1, rows
    return rows[0] if rows else {}


async def _retry(api: Api, token: str, leg_id: str) -> httpx.Response:
    return await api.http.post(f"/v1/copies/{leg_id}/retry", headers=api.auth(token))


async def _ledger(engine: AsyncEngine, account_id: str, symbol: str) -> Decimal:
    async with engine.connect() as conn:
        qty = (
            await conn.execute(
                text(
                    "SELECT COALESCE(sum(qty), 0) FROM copy_positions "
                    "WHERE account_id = :a AND symbol = :s"
                ),
                {"a": account_id, "s": symbol},
            )
        ).scalar_one()
    return Decimal(qty)


async def test_a_failed_copy_is_retried_exactly_once(api: Api, engine: AsyncEngine) -> None:
    master_id, master = await api.user("master")
    account_id, _ = await api.sim_account(master)
    follower = await api.follower(master_id, {"mode": "multiplier", "factor": "1"})
    other = await api.follower(master_id, {"mode": "multiplier", "factor": "1"})
    sim_id = follower["sim_account_id"]
    # Every request of this follower's broker fails: its copy stays in doubt (a failed lookup
    # proves nothing, so it is never given up while the broker cannot be asked).
    faults = await api.sim.put("/sim/faults", params={"account_id": sim_id}, json={"error_rate": 1})
    assert faults.status_code == 200, faults.text
    symbol = "RT" + os.urandom(2).hex().upper()
    order_id = (await api.order(master, account_id, symbol=symbol, qty="7")).json()["order_id"]

    async def in_doubt() -> dict[str, Any] | None:
        copy = await _copy(api, follower, order_id)
        return copy if copy.get("status") == "unknown" else None

    copy = await eventually(in_doubt, timeout_s=30, message="the copy never went in doubt")
    leg_id = copy["leg_id"]
    # Then it failed for good (a definitive refusal, say revoked keys), giving its ledger back.
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
    assert await _ledger(engine, follower["account_id"], symbol) == 0
    # Only the owner (or an admin) may retry: anyone else is told there is no such copy.
    for token in (other["token"], master):
        r = await _retry(api, token, leg_id)
        assert r.status_code == 404 and r.json()["error"]["code"] == "copy_not_found", r.text
    faults = await api.sim.put("/sim/faults", params={"account_id": sim_id}, json={"error_rate": 0})
    assert faults.status_code == 200, faults.text
    assert await _sim_orders(api, sim_id, symbol) == []  # the broker never got it

    first, second = await asyncio.gather(
        _retry(api, follower["token"], leg_id), _retry(api, follower["token"], leg_id)
    )
    answers = sorted([first, second], key=lambda r: r.status_code)
    assert [r.status_code for r in answers] == [202, 409], [r.text for r in answers]
    assert answers[0].json()["status"] == "unknown"
    assert answers[1].json()["error"]["code"] == "not_retryable"

    async def filled() -> dict[str, Any] | None:
        copy = await _copy(api, follower, order_id)
        return copy if copy.get("status") == "filled" else None

    copy = await eventually(filled, timeout_s=30, message="the retried copy was not placed")
    assert copy["filled_qty"] == "7"
    placed = await _sim_orders(api, sim_id, symbol)
    assert len(placed) == 1 and placed[0]["client_order_id"] == copy["client_order_id"]
    assert await api.position(sim_id, symbol) == Decimal(7)
    assert await _ledger(engine, follower["account_id"], symbol) == 7  # reserved again, filled
    r = await _retry(api, follower["token"], leg_id)
    assert r.status_code == 409 and r.json()["error"]["details"]["status"] == "filled"


async def _sim_orders(api: Api, sim_id: str, symbol: str) -> list[dict[str, Any]]:
    return [
        o for o in await api.sim_orders() if o["account_id"] == sim_id and o["symbol"] == symbol
    ]


async def test_a_retry_finds_a_copy_the_broker_got_and_does_not_resend(
    api: Api, engine: AsyncEngine
) -> None:
    master_id, master = await api.user("master")
    account_id, _ = await api.sim_account(master)
    follower = await api.follower(master_id, {"mode": "multiplier", "factor": "1"})
    sim_id = follower["sim_account_id"]
    symbol = "RL" + os.urandom(2).hex().upper()
    order_id = (await api.order(master, account_id, symbol=symbol, qty="4")).json()["order_id"]
    [at_broker] = await eventually(
        lambda: _sim_orders(api, sim_id, symbol), timeout_s=30, message="no copy at the broker"
    )
    copy = await _copy(api, follower, order_id)
    # The sweeper gave up on it while the broker could not be asked (its window passed): the
    # order is at the broker all the same. A retry must find it, never place it again.
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE legs SET status = 'expired', reason = 'copy_deadline: in_doubt', "
                "filled_qty = 0, settled_at = now() WHERE id = :id"
            ),
            {"id": copy["leg_id"]},
        )
        # ... and, like any leg that ends unfilled, gave its ledger reservation back.
        await conn.execute(
            text("UPDATE copy_positions SET qty = qty - 4 WHERE account_id = :a AND symbol = :s"),
            {"a": follower["account_id"], "s": symbol},
        )
    r = await _retry(api, follower["token"], copy["leg_id"])
    assert r.status_code == 202, r.text

    async def filled() -> dict[str, Any] | None:
        copy = await _copy(api, follower, order_id)
        return copy if copy.get("status") == "filled" else None

    settled = await eventually(filled, timeout_s=30, message="the retried copy was not found")
    assert settled["broker_order_id"] == at_broker["id"]  # looked up, not placed again
    assert len(await _sim_orders(api, sim_id, symbol)) == 1
    assert await _ledger(engine, follower["account_id"], symbol) == 4
