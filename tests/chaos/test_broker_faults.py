"""Chaos: a broker's bad minute never costs a follower its copy (issue 16).

Each fault runs against the real stack (simulator, API, replicator, sweeper; broker dedup off so
a blind resend would show as a duplicate) and asserts, with the simulator's own orders as the
truth: 0 duplicates, 0 lost, every leg filled within 30 s of the fault ending.
Sizes: COPYTRADE_CHAOS_FOLLOWERS (default 20) and COPYTRADE_CHAOS_ORDERS (default 2); `make
chaos` runs them larger."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.chaos.settings import FAST_RECOVERY
from tests.helpers import Api, Stack

FOLLOWERS = int(os.environ.get("COPYTRADE_CHAOS_FOLLOWERS", "20"))
ORDERS = int(os.environ.get("COPYTRADE_CHAOS_ORDERS", "2"))
RECOVERY_S = 30.0


@pytest.fixture(scope="module")
def stack(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(
        service_env,
        Path(tmp_path_factory.mktemp("chaos")),
        workers=1,
        overrides={
            **FAST_RECOVERY,
            # accept-then-timeout: the simulator places the order, then holds its answer past
            # our read timeout (the order is at the broker; we do not know it).
            "COPYTRADE_SIM_TIMEOUT_HOLD_S": "5",
            "COPYTRADE_BROKER_READ_TIMEOUT_S": "3",
        },
    ).start()
    try:
        yield s
    finally:
        s.stop()


async def _run_with_fault(
    stack: Stack,
    fault: dict[str, Any],
    fault_s: float,
    orders: int = ORDERS,
    master_fault: dict[str, Any] | None = None,
    follower_fault: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Followers, then `orders` orders under `fault` (the master's account under `master_fault`,
    each follower's under `follower_fault`, when given) for `fault_s`; returns measured
    numbers."""
    api = Api(stack.api_url, stack.sim_url)
    try:
        master_id, master_token = await api.user("master")
        master_account, master_sim = await api.sim_account(master_token)
        semaphore = asyncio.Semaphore(10)

        async def make() -> dict[str, str]:
            async with semaphore:
                return await api.follower(master_id, {"mode": "fixed", "qty": "1"})

        followers = await asyncio.gather(*(make() for _ in range(FOLLOWERS)))
        rate_limited_before = (await api.sim.get("/sim/stats")).json()["rate_limited"]
        await api.sim.put("/sim/faults", json={"dedup_client_order_id": False, **fault})
        if master_fault is not None:
            await api.sim.put(f"/sim/faults?account_id={master_sim}", json=master_fault)
        for follower in followers if follower_fault is not None else []:
            account = follower["sim_account_id"]
            await api.sim.put(f"/sim/faults?account_id={account}", json=follower_fault)
        order_ids = []
        for _ in range(orders):
            response = await api.order(master_token, master_account, qty="1")
            assert response.status_code == 202, response.text
            order_ids.append(response.json()["order_id"])
        await asyncio.sleep(fault_s)  # the fault's duration is the scenario, not a wait
        healed = {
            "error_rate": 0.0,
            "rate_limit_per_min": None,
            "accept_then_timeout_rate": 0.0,
            "dedup_client_order_id": True,
        }
        for follower in followers if follower_fault is not None else []:
            account = follower["sim_account_id"]
            await api.sim.put(f"/sim/faults?account_id={account}", json=healed)
        await api.sim.put("/sim/faults", json=healed)
        fault_ended = time.monotonic()
        for order_id in order_ids:
            summary = await api.settled(master_token, order_id, timeout_s=RECOVERY_S + 15)
            assert summary["legs"]["by_status"] == {"filled": FOLLOWERS}, summary["legs"]
        recovered_s = time.monotonic() - fault_ended
        sim_accounts = {f["sim_account_id"] for f in followers}
        counts = Counter(
            o["account_id"] for o in await api.sim_orders() if o["account_id"] in sim_accounts
        )
        lost = sum(1 for a in sim_accounts if counts[a] < orders)
        duplicates = sum(max(0, n - orders) for n in counts.values())
        rate_limited = (await api.sim.get("/sim/stats")).json()["rate_limited"]
        return {
            "copies": FOLLOWERS * orders,
            "recovered_s": recovered_s,
            "lost": lost,
            "duplicates": duplicates,
            "answered_429": rate_limited - rate_limited_before,
        }
    finally:
        await api.aclose()


def _report(name: str, numbers: dict[str, Any]) -> None:
    print(
        f"\nchaos {name}: {numbers['copies']} copies, lost {numbers['lost']}, "
        f"duplicates {numbers['duplicates']}, recovered {numbers['recovered_s']:.1f} s after, "
        f"{numbers['answered_429']} answers 429"
    )
    assert numbers["duplicates"] == 0 and numbers["lost"] == 0, numbers
    assert numbers["recovered_s"] <= RECOVERY_S, numbers


async def test_thirty_percent_of_broker_calls_answer_5xx(stack: Stack) -> None:
    _report("30% 5xx", await _run_with_fault(stack, {"error_rate": 0.3}, 5.0))


async def test_a_429_storm(stack: Stack) -> None:
    """One request per follower account per minute for 8 s (60 s under `make chaos`), three
    orders: every follower's second and third copies are answered 429 with a Retry-After near
    60 s. Each account is probed with one request at most every 15 s (services/infra/
    cooldown.py), so the copies are placed within 30 s of the limit being lifted, not a minute
    after. (The master's account is not limited here: a master whose position cannot be read
    holds the order, copies included, which test_a_429_storm_on_the_master covers.)"""
    storm_s = 60.0 if os.environ.get("COPYTRADE_CHAOS_FULL") else 8.0
    orders = max(ORDERS, 3)
    numbers = await _run_with_fault(
        stack, {"rate_limit_per_min": 1}, storm_s, orders, {"rate_limit_per_min": None}
    )
    _report("429 storm", numbers)
    # The storm happened, and was met with probes, not bursts: per account, the first answers
    # 429 of the concurrent copies plus one probe every 15 s at most.
    accounts = FOLLOWERS + 1
    assert numbers["answered_429"] >= FOLLOWERS, numbers
    assert numbers["answered_429"] <= accounts * (orders + storm_s / 15 + 1), numbers


async def test_the_broker_down_for_a_while(stack: Stack) -> None:
    # The master's position read fails too: the order is held, never copied half-way.
    _report("broker down", await _run_with_fault(stack, {"error_rate": 1.0}, 10.0))


async def test_a_429_storm_on_the_master(stack: Stack) -> None:
    """Every account, the master's included, at one request a minute for 8 s (60 s under `make
    chaos`): orders are held while the master's position cannot be read (copy-or-hold), then
    all copied once."""
    storm_s = 60.0 if os.environ.get("COPYTRADE_CHAOS_FULL") else 8.0
    numbers = await _run_with_fault(stack, {"rate_limit_per_min": 1}, storm_s, max(ORDERS, 3))
    _report("429 storm, master included", numbers)
    assert numbers["answered_429"] > 0, numbers


async def test_a_follower_down_past_its_copy_deadline_expires_its_copy(stack: Stack) -> None:
    """Followers whose broker answers 5xx for longer than their copy deadline (3 s): once the
    broker answers again, each copy is looked up, not found, and ends `expired` with its reason
    and attempts; nothing is placed after the deadline, nothing twice."""
    api = Api(stack.api_url, stack.sim_url)
    try:
        master_id, master_token = await api.user("master")
        master_account, _ = await api.sim_account(master_token)
        followers = [
            await api.follower(
                master_id, {"mode": "fixed", "qty": "1"}, None, {"copy_deadline_s": 3}
            )
            for _ in range(3)
        ]
        await api.sim.put("/sim/faults", json={"dedup_client_order_id": False})
        for follower in followers:
            await api.sim.put(
                f"/sim/faults?account_id={follower['sim_account_id']}", json={"error_rate": 1.0}
            )
        response = await api.order(master_token, master_account, qty="1")
        assert response.status_code == 202, response.text
        order_id = response.json()["order_id"]
        await asyncio.sleep(5.0)  # the outage outlasts the 3 s copy deadline: the scenario
        for follower in followers:
            await api.sim.put(
                f"/sim/faults?account_id={follower['sim_account_id']}", json={"error_rate": 0.0}
            )
        summary = await api.settled(master_token, order_id, timeout_s=RECOVERY_S)
        assert summary["legs"]["by_status"] == {"expired": 3}, summary["legs"]
        for follower in followers:
            copies = (
                await api.http.get(
                    "/v1/copies", params={"order_id": order_id}, headers=api.auth(follower["token"])
                )
            ).json()
            [copy] = copies
            assert copy["status"] == "expired", copy
            assert copy["reason"].startswith("copy_deadline: ") and "attempts)" in copy["reason"]
        sim_accounts = {f["sim_account_id"] for f in followers}
        placed = [o for o in await api.sim_orders() if o["account_id"] in sim_accounts]
        assert placed == [], placed  # a 5xx here never let an order through: none, not late
    finally:
        await api.sim.put("/sim/faults", json={"dedup_client_order_id": True})
        await api.aclose()


async def test_thirty_percent_of_orders_accepted_then_timed_out(stack: Stack) -> None:
    """30% of new orders are placed by the broker, whose answer never arrives (held past our
    read timeout): each such copy is in doubt, found by lookup, never sent twice."""
    received_before = (await _sim_stats(stack))["orders_received"]
    numbers = await _run_with_fault(stack, {"accept_then_timeout_rate": 0.3}, 8.0)
    _report("accept-then-timeout 30%", numbers)
    # Every order the broker received was kept: no resend reached it (dedup was off).
    stats = await _sim_stats(stack)
    assert stats["orders_received"] - received_before == numbers["copies"] + ORDERS, stats


async def test_follower_accounts_down_longer_than_the_old_attempt_budget(stack: Stack) -> None:
    """Every follower's account (not the master's) answers 5xx for 15 s (90 s under `make
    chaos`): far more than the old 8 attempts' 13-70 s. With the default copy deadline (300 s)
    every copy is retried until the accounts answer again, then placed once."""
    down_s = 90.0 if os.environ.get("COPYTRADE_CHAOS_FULL") else 15.0
    numbers = await _run_with_fault(stack, {}, down_s, follower_fault={"error_rate": 1.0})
    _report(f"follower accounts down {down_s:.0f} s", numbers)


async def _sim_stats(stack: Stack) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=stack.sim_url, timeout=30) as sim:
        stats: dict[str, Any] = (await sim.get("/sim/stats")).json()
        return stats
