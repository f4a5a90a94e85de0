"""On a three-node NATS cluster with R3 streams: kill -9 the ORDERS stream leader mid fan-out,
post orders while it is gone, restart it; every order that got 202 reaches every follower
exactly once (simulator truth). Also two API processes behind the same cluster (a follower's
socket on one, the master's POST on the other) and replicators in their own process groups
with their own data directories and metrics ports (stand-ins for hosts).

Modest by default (20 followers, 1 + 3 orders); `make cluster-test` runs it at full size
(COPYTRADE_CLUSTER_FOLLOWERS, COPYTRADE_CLUSTER_ORDERS). Numbers of each run land in
test-artifacts/cluster-kill-leader.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
import websockets

from schemas.messages import ORDERS_STREAM, SHARDS_STREAM
from services.dev.embedded import ServerProcess, cluster_url, free_port, start_nats_cluster
from services.dev.processes import Child
from services.infra.bus import REPLICATOR_CONSUMER, SHARD_CONSUMER
from tests.conftest import ARTIFACTS
from tests.helpers import Api, Stack, eventually, wait_http

FOLLOWERS = int(os.environ.get("COPYTRADE_CLUSTER_FOLLOWERS", "20"))
ORDERS_WHILE_DOWN = int(os.environ.get("COPYTRADE_CLUSTER_ORDERS", "3"))
# One symbol per order (the simulator trades any symbol), so the simulator's orders can be
# counted per (follower, master order).
SYMBOLS = [f"CL{chr(65 + i // 26)}{chr(65 + i % 26)}" for i in range(1 + ORDERS_WHILE_DOWN)]


class Cluster:
    def __init__(self, nodes: list[ServerProcess]) -> None:
        self.nodes = nodes
        self.url = cluster_url(nodes)

    def node(self, server_name: str) -> ServerProcess:
        [node] = [n for n in self.nodes if server_name.endswith(n.name.removeprefix("nats-"))]
        return node

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(start_nats_cluster(Path(tmp_path_factory.mktemp("cluster")), 3))
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def stack(
    service_env: dict[str, str], cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    log_dir = Path(tmp_path_factory.mktemp("cluster-stack"))
    s = Stack(
        {**service_env, "COPYTRADE_NATS_URL": cluster.url},
        log_dir,
        workers=0,
        overrides={
            # Four requests at a time at 100 ms each: a 20-follower fan-out takes ~0.5 s.
            "COPYTRADE_MAX_CONCURRENT_PER_HOST": "4",
            "COPYTRADE_LEG_LEASE_S": "3",
            "COPYTRADE_RESEND_GRACE_S": "1",
            "COPYTRADE_UNKNOWN_RECHECK_S": "0.5",
            "COPYTRADE_CONSUMER_ACK_WAIT_S": "5",
            "COPYTRADE_SWEEP_INTERVAL_S": "0.2",
            "COPYTRADE_SHARD_SIZE": str(max(5, FOLLOWERS // 4)),
            "COPYTRADE_BATCH_SIZE": "10",
        },
    ).start()
    # Two replicators, each in its own process group with its own data directory and metrics
    # port, as if on two hosts.
    for index in (1, 2):
        s.start_worker(
            {
                "COPYTRADE_DATA_DIR": str(log_dir / f"host-{index}"),
                "COPYTRADE_METRICS_PORT": str(free_port()),
                "COPYTRADE_METRICS_HOST": "127.0.0.1",
            }
        )
    try:
        yield s
    finally:
        s.stop()


async def _stream_leader(url: str, stream: str = ORDERS_STREAM) -> str | None:
    try:
        nc = await nats.connect(servers=url.split(","), connect_timeout=1, max_reconnect_attempts=1)
    except Exception:
        return None
    try:
        # A short timeout: the probe's resolution is the measured election time's.
        info = await nc.jetstream(timeout=0.5).stream_info(stream)
        return info.cluster.leader if info.cluster else None
    except Exception:
        return None
    finally:
        await nc.close()


async def _replicas_current(url: str, stream: str) -> bool:
    nc = await nats.connect(servers=url.split(","))
    try:
        info = await nc.jetstream().stream_info(stream)
        replicas = info.cluster.replicas if info.cluster else None
        return bool(info.cluster and info.cluster.leader) and all(
            peer.current and not peer.offline for peer in replicas or []
        )
    except Exception:
        return False
    finally:
        await nc.close()


async def _settled(api: Api, token: str, order_id: str) -> dict[str, Any] | None:
    body: dict[str, Any] = (
        await api.http.get(f"/v1/orders/{order_id}", headers=api.auth(token))
    ).json()
    return body if body.get("status") == "replicated" else None


async def test_kill_the_stream_leader_mid_fanout(stack: Stack, cluster: Cluster) -> None:
    api = Api(stack.api_url, stack.sim_url)
    numbers: dict[str, Any] = {"followers": FOLLOWERS}
    try:
        master_id, master = await api.user("master")
        master_account, _ = await api.sim_account(master)
        semaphore = asyncio.Semaphore(10)

        async def make() -> dict[str, str]:
            async with semaphore:
                return await api.follower(master_id, {"mode": "fixed", "qty": "1"})

        followers = await asyncio.gather(*(make() for _ in range(FOLLOWERS)))
        # Slow broker, no broker-side dedup: only our own bookkeeping prevents duplicates.
        r = await api.sim.put(
            "/sim/faults", json={"latency_ms": 100, "dedup_client_order_id": False}
        )
        assert r.status_code == 200

        leader = await _stream_leader(cluster.url)
        assert leader is not None, "the ORDERS stream has no leader"
        before = (await api.sim.get("/sim/stats")).json()["orders_received"]
        accepted: dict[str, str] = {}  # order id → symbol
        first = await api.order(master, master_account, qty="1", symbol=SYMBOLS[0])
        assert first.status_code == 202, first.text
        accepted[first.json()["order_id"]] = SYMBOLS[0]

        async def mid_fanout() -> int:
            received: int = (await api.sim.get("/sim/stats")).json()["orders_received"]
            return received if received - before >= 3 else 0

        await eventually(mid_fanout, timeout_s=20, interval_s=0.02)
        victim = cluster.node(leader)
        killed_at = time.monotonic()
        victim.kill()
        at_kill = (await api.sim.get("/sim/stats")).json()["orders_received"] - before
        numbers["legs_sent_before_kill"] = at_kill
        assert at_kill < FOLLOWERS + 1, "the fan-out finished before the kill"

        # Orders while the leader is gone: 202 (durable in PostgreSQL; published now or by the
        # outbox) or a retryable 5xx, never a 202 that is then lost.
        answers: list[dict[str, Any]] = []
        for index in range(ORDERS_WHILE_DOWN):
            symbol = SYMBOLS[index + 1]
            started = time.monotonic()
            try:
                response = await api.order(master, master_account, qty="1", symbol=symbol)
                status, body = response.status_code, response.json()
            except httpx.TimeoutException:
                status, body = 0, {}
            answers.append({"status": status, "ms": round((time.monotonic() - started) * 1000)})
            assert status == 202 or status >= 500 or status == 0, body
            if status == 202:
                accepted[body["order_id"]] = symbol
        numbers["orders_while_leader_down"] = answers

        async def new_leader() -> str | None:
            found = await _stream_leader(cluster.url)
            return found if found and found != leader else None

        elected = await eventually(new_leader, timeout_s=30, interval_s=0.1)
        numbers["new_leader_after_ms"] = round((time.monotonic() - killed_at) * 1000)
        numbers["leaders"] = [leader, elected]

        victim.restart()

        async def caught_up() -> bool:
            return all(
                [
                    await _replicas_current(cluster.url, ORDERS_STREAM),
                    await _replicas_current(cluster.url, SHARDS_STREAM),
                ]
            )

        await eventually(caught_up, timeout_s=60, interval_s=0.2, message="replica not current")
        numbers["old_leader_current_after_ms"] = round((time.monotonic() - killed_at) * 1000)

        for order_id in accepted:
            summary = await eventually(
                lambda order_id=order_id: _settled(api, master, order_id),  # type: ignore[misc]
                timeout_s=90,
                message=f"order {order_id} unsettled",
            )
            assert summary["legs"] == {"total": FOLLOWERS, "by_status": {"filled": FOLLOWERS}}, (
                summary["legs"]
            )
        numbers["all_settled_after_kill_ms"] = round((time.monotonic() - killed_at) * 1000)

        # Simulator truth: exactly one order per (follower, master order).
        sim_accounts = {f["sim_account_id"] for f in followers}
        counts = Counter(
            (o["account_id"], o["symbol"])
            for o in await api.sim_orders()
            if o["account_id"] in sim_accounts
        )
        expected = {(a, s) for a in sim_accounts for s in accepted.values()}
        assert set(counts) == expected, "a follower missed an order"
        assert set(counts.values()) == {1}, [k for k, n in counts.items() if n > 1]
        numbers["orders_accepted"] = len(accepted)
        # Structured logs: the replicators' lines about these orders carry their order_id.
        logged = set()
        for path in stack.log_dir.glob("replicator-*.log"):
            for line in path.read_text().splitlines():
                if line.startswith("{"):
                    logged.add(json.loads(line).get("order_id"))
        assert set(accepted) <= logged, set(accepted) - logged
        api_log = (stack.log_dir / "api.log").read_text()
        numbers["publishes_left_to_outbox"] = api_log.count("left to the outbox")
        numbers["follower_orders_at_simulator"] = sum(counts.values())

        nc = await nats.connect(servers=cluster.url.split(","))
        try:
            for stream, consumer in (
                (ORDERS_STREAM, REPLICATOR_CONSUMER),
                (SHARDS_STREAM, SHARD_CONSUMER),
            ):

                async def drained(stream: str = stream, consumer: str = consumer) -> bool:
                    info = await nc.jetstream().consumer_info(stream, consumer)
                    return info.num_ack_pending == 0 and info.num_pending == 0

                await eventually(drained, timeout_s=30, message=f"{stream} not drained")
            info = await nc.jetstream().stream_info(ORDERS_STREAM)
            assert info.config.num_replicas == 3
        finally:
            await nc.close()
        await api.sim.put("/sim/faults", json={"latency_ms": 0, "dedup_client_order_id": True})
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "cluster-kill-leader.json").write_text(json.dumps(numbers, indent=2))
        print("kill-the-leader:", json.dumps(numbers))
        await api.aclose()


async def test_replicators_as_hosts_each_serve_metrics_and_readiness(stack: Stack) -> None:
    """Each replicator is its own process group with its own data directory and metrics port;
    the legs settled by both add up to every leg of an order."""
    workers = stack.workers_alive()
    assert len(workers) == 2
    assert len({os.getpgid(w.pid) for w in workers} | {os.getpgrp()}) == 3
    ports = [int(w.env["COPYTRADE_METRICS_PORT"]) for w in workers]
    assert len({w.env["COPYTRADE_DATA_DIR"] for w in workers}) == 2
    async with httpx.AsyncClient(timeout=5) as http:

        async def ready() -> bool:
            answers = [await http.get(f"http://127.0.0.1:{p}/readyz") for p in ports]
            return all(a.status_code == 200 for a in answers)

        await eventually(ready, timeout_s=20, message="replicators not ready")

        async def legs_settled() -> float:
            total = 0.0
            for port in ports:
                text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
                for line in text.splitlines():
                    if line.startswith("copytrade_legs_total{"):
                        total += float(line.rsplit(" ", 1)[1])
            return total

        api = Api(stack.api_url, stack.sim_url)
        try:
            before = await legs_settled()
            master_id, master = await api.user("master")
            master_account, _ = await api.sim_account(master)
            for _ in range(6):
                await api.follower(master_id, {"mode": "fixed", "qty": "1"})
            order = await api.order(master, master_account, qty="1")
            assert order.status_code == 202
            await api.settled(master, order.json()["order_id"], timeout_s=60)

            async def counted() -> bool:
                # six followers and the master's own leg
                return await legs_settled() - before >= 7

            await eventually(counted, timeout_s=20, message="legs missing from the metrics")
        finally:
            await api.aclose()


async def test_two_api_processes_behind_one_cluster(
    stack: Stack, cluster: Cluster, tmp_path: Path
) -> None:
    """A follower's socket on API B (two uvicorn workers), the master's POST on API A."""
    port = free_port()
    url_b = f"http://127.0.0.1:{port}"
    servers = cluster.url.split(",")
    env_b = {
        **stack.env,
        "COPYTRADE_API_PORT": str(port),
        "COPYTRADE_API_WORKERS": "2",
        "COPYTRADE_DATA_DIR": str(tmp_path / "api-b"),
        # The same cluster, listed from its other end.
        "COPYTRADE_NATS_URL": ",".join(reversed(servers)),
    }
    api_b = Child("api-b", "services.api", env_b, tmp_path / "api-b.log")
    api_b.start()
    a = Api(stack.api_url, stack.sim_url)
    b = Api(url_b, stack.sim_url)
    try:
        wait_http(f"{url_b}/readyz", 60, [api_b])
        master_id, master = await a.user("master")
        master_account, _ = await a.sim_account(master)
        follower = await a.follower(master_id, {"mode": "fixed", "qty": "2"})
        token = (await b.http.post("/v1/ws/token", headers=b.auth(follower["token"]))).json()[
            "token"
        ]
        socket = await websockets.connect(
            url_b.replace("http://", "ws://") + "/v1/ws",
            subprotocols=["copytrade.v1", token],  # type: ignore[list-item]
            origin=url_b,  # type: ignore[arg-type]
            open_timeout=10,
        )
        events: list[dict[str, Any]] = []

        async def read() -> None:
            async for raw in socket:
                events.append(json.loads(raw))

        reader = asyncio.create_task(read())
        try:
            response = await a.order(master, master_account, qty="4")
            assert response.status_code == 202
            order_id = response.json()["order_id"]

            async def filled() -> bool:
                return any(
                    e.get("type") == "leg.updated"
                    and e.get("order_id") == order_id
                    and e.get("status") == "filled"
                    for e in events
                )

            await eventually(filled, timeout_s=30, message="no leg event on API B's socket")
        finally:
            await socket.close()
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        # Several API processes: /metrics sums them (prometheus multiprocess mode).
        metrics = (await b.http.get("/metrics")).text
        assert "copytrade_ws_events_sent_total" in metrics
    finally:
        await a.aclose()
        await b.aclose()
        api_b.signal(signal.SIGTERM)
        if not api_b.wait(10):
            api_b.signal(signal.SIGKILL)
            api_b.wait(5)
