"""kill -9 a replicator in the middle of a fan-out: still exactly one order per follower."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from schemas.messages import ORDERS_STREAM, SHARDS_STREAM
from services.infra.bus import REPLICATOR_CONSUMER, SHARD_CONSUMER
from tests.helpers import Api, Stack, eventually

FOLLOWERS = 200


@pytest.fixture(scope="module")
def stack(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(
        service_env,
        Path(tmp_path_factory.mktemp("crash")),
        workers=1,
        overrides={
            # Ten requests at a time at 200 ms each: the fan-out takes about four seconds.
            "COPYTRADE_MAX_CONCURRENT_PER_HOST": "10",
            "COPYTRADE_LEG_LEASE_S": "3",
            "COPYTRADE_RESEND_GRACE_S": "1",
            "COPYTRADE_UNKNOWN_RECHECK_S": "0.5",
            "COPYTRADE_CONSUMER_ACK_WAIT_S": "5",
            "COPYTRADE_SWEEP_INTERVAL_S": "0.2",
            # Four shards: the kill lands while shards are queued, recorded or being sent.
            "COPYTRADE_SHARD_SIZE": "50",
            "COPYTRADE_BATCH_SIZE": "20",
        },
    ).start()
    try:
        yield s
    finally:
        s.stop()


async def test_kill_a_worker_mid_fanout(stack: Stack) -> None:
    api = Api(stack.api_url, stack.sim_url)
    try:
        master_id, master_token = await api.user("master")
        master_account, _ = await api.sim_account(master_token)
        semaphore = asyncio.Semaphore(20)

        async def make() -> dict[str, str]:
            async with semaphore:
                return await api.follower(master_id, {"mode": "fixed", "qty": "1"})

        followers = await asyncio.gather(*(make() for _ in range(FOLLOWERS)))
        # Slow broker, and no broker-side dedup: only our own bookkeeping prevents duplicates.
        r = await api.sim.put(
            "/sim/faults", json={"latency_ms": 200, "dedup_client_order_id": False}
        )
        assert r.status_code == 200

        response = await api.order(master_token, master_account, qty="1")
        assert response.status_code == 202
        order_id = response.json()["order_id"]

        async def mid_fanout() -> int:
            received: int = (await api.sim.get("/sim/stats")).json()["orders_received"]
            return received if received >= 30 else 0

        await eventually(mid_fanout, timeout_s=20, interval_s=0.02)
        [worker] = stack.workers_alive()
        worker.signal(signal.SIGKILL)
        assert worker.wait(5)
        received_at_kill = (await api.sim.get("/sim/stats")).json()["orders_received"]
        assert received_at_kill < FOLLOWERS, "the fan-out finished before the kill"
        stack.start_worker()

        async def settled() -> dict[str, Any] | None:
            body: dict[str, Any] = (
                await api.http.get(f"/v1/orders/{order_id}", headers=api.auth(master_token))
            ).json()
            return body if body["status"] == "replicated" else None

        summary = await eventually(settled, timeout_s=60, message="legs left unsettled")
        if summary["legs"] != {"total": FOLLOWERS, "by_status": {"filled": FOLLOWERS}}:
            odd = []
            for follower in followers:
                copy = await api.copy_of(follower, order_id)
                if copy["status"] != "filled":
                    odd.append((copy["status"], copy["reason"]))
            raise AssertionError(f"{summary['legs']}: {odd}")

        sim_accounts = {f["sim_account_id"] for f in followers}
        counts = Counter(
            o["account_id"] for o in await api.sim_orders() if o["account_id"] in sim_accounts
        )
        assert len(counts) == FOLLOWERS, "a follower got no order"
        assert set(counts.values()) == {1}, f"duplicates: {[a for a, n in counts.items() if n > 1]}"

        nc = await nats.connect(stack.env["COPYTRADE_NATS_URL"])
        try:
            for stream, consumer in (
                (ORDERS_STREAM, REPLICATOR_CONSUMER),
                (SHARDS_STREAM, SHARD_CONSUMER),
            ):
                info = await nc.jetstream().consumer_info(stream, consumer)
                assert info.num_ack_pending == 0 and info.num_pending == 0, (stream, info)
        finally:
            await nc.close()
        await api.sim.put("/sim/faults", json={"latency_ms": 0, "dedup_client_order_id": True})
    finally:
        await api.aclose()
