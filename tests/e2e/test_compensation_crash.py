"""kill -9 the processes compensating a refused master order while its unwind legs are being sent:
the unwind completes exactly once per follower (issue 18). The simulator's own de-duplication of
client order ids is off, so only our bookkeeping (legs recorded before they are sent, looked up
by client order id, the compensation claimed once) keeps a second closing order away."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.helpers import Api, Stack, eventually

FOLLOWERS = 3


@pytest.fixture(scope="module")
def stack(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(
        service_env,
        Path(tmp_path_factory.mktemp("compensation-crash")),
        workers=1,
        overrides={
            "COPYTRADE_LEG_LEASE_S": "3",
            "COPYTRADE_RESEND_GRACE_S": "1",
            "COPYTRADE_UNKNOWN_RECHECK_S": "0.5",
            "COPYTRADE_SWEEP_INTERVAL_S": "0.2",
        },
    ).start()
    try:
        yield s
    finally:
        s.stop()


async def _unwinds(db: AsyncEngine, order_id: str) -> list[str]:
    async with db.connect() as conn:
        rows = await conn.execute(
            text("SELECT status FROM legs WHERE order_id = :o AND action = 'unwind'"),
            {"o": order_id},
        )
        return [str(row[0]) for row in rows]


async def test_kill_the_compensating_workers_mid_unwind(stack: Stack, engine: AsyncEngine) -> None:
    api = Api(stack.api_url, stack.sim_url)
    try:
        await api.sim.put("/sim/prices", json={"CRSH": "100"})
        master_id, master = await api.user("master")
        account, master_sim = await api.sim_account(master)
        followers = [
            await api.follower(master_id, {"mode": "fixed", "qty": "3"}) for _ in range(FOLLOWERS)
        ]
        # Slow followers' broker (copies and unwinds take 0.9 s each, inside the send deadline
        # of half a lease) without its de-duplication; the master's broker refuses its order.
        for follower in followers:
            r = await api.sim.put(
                "/sim/faults",
                params={"account_id": follower["sim_account_id"]},
                json={"latency_ms": 900, "dedup_client_order_id": False},
            )
            assert r.status_code == 200, r.text
        r = await api.sim.put(
            "/sim/faults", params={"account_id": master_sim}, json={"reject_orders": True}
        )
        assert r.status_code == 200, r.text
        order_id = (await api.order(master, account, symbol="CRSH", qty="5")).json()["order_id"]

        async def unwinding() -> bool:
            statuses = await _unwinds(engine, order_id)
            return len(statuses) > 0 and "submitting" in statuses

        await eventually(unwinding, timeout_s=30, interval_s=0.02, message="no unwind in flight")
        # Whichever of them holds the compensation (the replicator that settled the master's
        # refusal, or the sweeper's pass) dies with its unwinds in flight.
        sweeper = next(c for c in stack.children if c.name == "sweeper")
        doomed = [sweeper, *stack.workers_alive()]
        for child in doomed:
            child.signal(signal.SIGKILL)
        for child in doomed:
            assert child.wait(5)
        assert "submitting" in await _unwinds(engine, order_id), (
            "the unwind finished before the kill"
        )
        for follower in followers:
            await api.sim.put(
                "/sim/faults",
                params={"account_id": follower["sim_account_id"]},
                json={"latency_ms": 0},
            )
        sweeper.start()
        stack.start_worker()

        async def compensated() -> list[str] | None:
            async with engine.connect() as conn:
                done = (
                    await conn.execute(
                        text("SELECT compensated_at IS NOT NULL FROM master_orders WHERE id = :o"),
                        {"o": order_id},
                    )
                ).scalar_one()
            statuses = await _unwinds(engine, order_id)
            return statuses if done and set(statuses) == {"filled"} else None

        statuses = await eventually(compensated, timeout_s=60, message="unwind not completed")
        assert len(statuses) == FOLLOWERS
        # Simulator truth: each follower bought 3 and sold 3, once.
        orders = await api.sim_orders()
        for follower in followers:
            mine: list[dict[str, Any]] = [
                o for o in orders if o["account_id"] == follower["sim_account_id"]
            ]
            assert sorted((o["side"], o["filled_qty"]) for o in mine) == [
                ("buy", "3"),
                ("sell", "3"),
            ], mine
            assert await api.position(follower["sim_account_id"], "CRSH") == 0
        for follower in followers:
            await api.sim.put(
                "/sim/faults",
                params={"account_id": follower["sim_account_id"]},
                json={"dedup_client_order_id": True},
            )
    finally:
        await api.aclose()
