"""Chaos: a server's bad minute never costs a follower its copy (issue 16, supervised servers).

The stack runs on its own embedded NATS, PostgreSQL and Valkey under the ServerSupervisor the
launcher uses (`make run`): each test kills one with SIGKILL (by pid: the processes this module
started), the supervisor reaps it, clears its stale locks and starts it again on the same port
and data. With the simulator's orders as the truth (broker dedup off: a blind resend would show)
each test asserts 0 duplicates, 0 lost and every leg filled within 30 s of the fault ending.
Sizes: COPYTRADE_CHAOS_FOLLOWERS (20) and COPYTRADE_CHAOS_ORDERS (2); outages of a few seconds,
longer under `make chaos` (COPYTRADE_CHAOS_FULL)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.dev.embedded import ServerProcess, free_port, start_stack, wait_for_port
from services.dev.supervisor import ServerSupervisor
from tests.chaos.settings import FAST_RECOVERY
from tests.helpers import Api, Stack, eventually, wait_http

FOLLOWERS = int(os.environ.get("COPYTRADE_CHAOS_FOLLOWERS", "20"))
ORDERS = int(os.environ.get("COPYTRADE_CHAOS_ORDERS", "2"))
FULL = bool(os.environ.get("COPYTRADE_CHAOS_FULL"))
POSTGRES_DOWN_S = 20.0 if FULL else 4.0
POSTGRES_LONG_DOWN_S = 120.0 if FULL else 10.0  # past COPYTRADE_DEAD_LETTER_AFTER deliveries
DEAD_LETTER_AFTER = 3
VALKEY_DOWN_S = 45.0 if FULL else 4.0
RECOVERY_S = 30.0


@dataclass
class Chaos:
    supervisor: ServerSupervisor
    stack: Stack
    ops_url: str  # a replicator's ops port (/readyz)


@pytest.fixture(scope="module")
def chaos(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chaos]:
    base = Path(tmp_path_factory.mktemp("server-chaos"))
    servers, urls = start_stack(base / "servers")
    supervisor = ServerSupervisor(servers.servers)
    supervisor.start_thread()
    env = {
        **service_env,
        "COPYTRADE_NATS_URL": urls["nats"],
        "COPYTRADE_DATABASE_URL": urls["database"],
        "COPYTRADE_REDIS_URL": urls["redis"],
    }
    stack = Stack(
        env,
        base / "stack",
        workers=0,
        overrides={
            **FAST_RECOVERY,
            "COPYTRADE_DEAD_LETTER_RETRY_S": "1",  # parked orders republished after 1 s
        },
    )
    try:
        stack.start()
        ops_port = free_port()
        worker = stack.start_worker({"COPYTRADE_METRICS_PORT": str(ops_port)})
        wait_http(f"http://127.0.0.1:{ops_port}/readyz", 60, [worker])
        yield Chaos(supervisor, stack, f"http://127.0.0.1:{ops_port}")
    finally:
        stack.stop()
        supervisor.stop_thread()
        servers.stop()


@dataclass
class Run:
    api: Api
    master_token: str = ""
    master_account: str = ""
    followers: list[dict[str, str]] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)  # order ids answered 202

    async def setup(self) -> Run:
        master_id, self.master_token = await self.api.user("master")
        self.master_account, _ = await self.api.sim_account(self.master_token)
        semaphore = asyncio.Semaphore(10)

        async def make() -> dict[str, str]:
            async with semaphore:
                return await self.api.follower(master_id, {"mode": "fixed", "qty": "1"})

        self.followers = list(await asyncio.gather(*(make() for _ in range(FOLLOWERS))))
        await self.api.sim.put("/sim/faults", json={"dedup_client_order_id": False})
        return self

    async def order(self, client_order_id: str | None = None) -> httpx.Response:
        response = await self.api.order(
            self.master_token,
            self.master_account,
            qty="1",
            client_order_id=client_order_id or os.urandom(8).hex(),
        )
        if response.status_code == 202 and response.json()["order_id"] not in self.accepted:
            self.accepted.append(response.json()["order_id"])
        return response

    async def measure(self, fault_ended: float) -> dict[str, Any]:
        """Wait until every accepted order is filled everywhere; the numbers to report."""
        for order_id in self.accepted:
            summary = await self.api.settled(self.master_token, order_id, RECOVERY_S + 15)
            assert summary["legs"]["by_status"] == {"filled": FOLLOWERS}, summary["legs"]
        recovered_s = time.monotonic() - fault_ended
        await self.api.sim.put("/sim/faults", json={"dedup_client_order_id": True})
        sim_accounts = {f["sim_account_id"] for f in self.followers}
        counts = Counter(
            o["account_id"] for o in await self.api.sim_orders() if o["account_id"] in sim_accounts
        )
        expected = len(self.accepted)
        return {
            "copies": FOLLOWERS * expected,
            "lost": sum(max(0, expected - counts[a]) for a in sim_accounts),
            "duplicates": sum(max(0, n - expected) for n in counts.values()),
            "recovered_s": recovered_s,
        }


def _report(name: str, numbers: dict[str, Any]) -> None:
    print(
        f"\nchaos {name}: {numbers['copies']} copies, lost {numbers['lost']}, duplicates "
        f"{numbers['duplicates']}, recovered {numbers['recovered_s']:.1f} s after"
        + "".join(f", {k} {v}" for k, v in numbers.items() if k.startswith(("api_", "parked")))
    )
    assert numbers["duplicates"] == 0 and numbers["lost"] == 0, numbers
    assert numbers["recovered_s"] <= RECOVERY_S, numbers


def _kill(server: ServerProcess) -> int:
    """kill -9 the server's main process (ours, by pid), as a crash would."""
    pid = server.process.pid
    os.kill(pid, signal.SIGKILL)
    return pid


async def _back(supervisor: ServerSupervisor, name: str, old_pid: int) -> float:
    """Wait until the supervisor has restarted `name` and it listens; when that happened."""
    server = supervisor.server(name)

    async def restarted() -> bool:
        return server.process.pid != old_pid and server.process.poll() is None

    await eventually(restarted, timeout_s=30, message=f"{name} not restarted")
    await asyncio.to_thread(wait_for_port, server.port, 30)
    assert not _zombie(old_pid), f"{name} pid {old_pid} left a zombie"
    return time.monotonic()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (FileNotFoundError, IndexError):
        return False


async def _not_ready(url: str, dependency: str) -> dict[str, Any]:
    """Wait until `url` (/readyz) answers 503 naming `dependency` unavailable."""

    async def probe() -> dict[str, Any] | None:
        try:
            async with httpx.AsyncClient(timeout=5) as http:
                response = await http.get(url)
        except httpx.HTTPError:
            return None  # not listening (yet): not an answer
        body: dict[str, Any] = response.json()
        unavailable = body["checks"].get(dependency, "").startswith("unavailable")
        return body if response.status_code == 503 and unavailable else None

    return await eventually(probe, timeout_s=15, message=f"{url} still ready")


async def test_kill_nats_server(chaos: Chaos) -> None:
    api = Api(chaos.stack.api_url, chaos.stack.sim_url)
    try:
        run = await Run(api).setup()
        for _ in range(ORDERS):
            assert (await run.order()).status_code == 202
        old = _kill(chaos.supervisor.server("nats"))
        for _ in range(ORDERS):  # while it restarts: stored, published by the outbox if need be
            response = await run.order()
            assert response.status_code in (202, 503), response.text
        fault_ended = await _back(chaos.supervisor, "nats", old)
        _report("kill -9 nats-server", await run.measure(fault_ended))
    finally:
        await api.aclose()


async def _during_outage(run: Run, seconds: float) -> tuple[list[str], Counter[int]]:
    """POST orders for `seconds` while a server is down: each answer is 202 or 503 with
    Retry-After, never 500; returns the client order ids refused 503 and the status counts."""
    refused: list[str] = []
    statuses: Counter[int] = Counter()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        client_order_id = os.urandom(8).hex()
        response = await run.order(client_order_id)
        statuses[response.status_code] += 1
        assert response.status_code in (202, 503), (response.status_code, response.text)
        if response.status_code == 503:
            assert response.json()["error"]["code"] == "unavailable", response.text
            assert int(response.headers["retry-after"]) > 0
            refused.append(client_order_id)
        await asyncio.sleep(0.2)  # a client's pace, not a wait for a condition
    return refused, statuses


async def test_kill_postgres(chaos: Chaos) -> None:
    api = Api(chaos.stack.api_url, chaos.stack.sim_url)
    supervisor = chaos.supervisor
    try:
        run = await Run(api).setup()
        for _ in range(ORDERS):
            assert (await run.order()).status_code == 202
        supervisor.hold("postgres")  # down for POSTGRES_DOWN_S, then restarted
        try:
            old = _kill(supervisor.server("postgres"))
            await _not_ready(f"{chaos.stack.api_url}/readyz", "database")
            await _not_ready(f"{chaos.ops_url}/readyz", "database")
            refused, statuses = await _during_outage(run, POSTGRES_DOWN_S)
        finally:
            supervisor.release("postgres")
        fault_ended = await _back(supervisor, "postgres", old)
        for client_order_id in refused:  # the client retries what was refused: same id

            async def accepted(client_order_id: str = client_order_id) -> bool:
                return (await run.order(client_order_id)).status_code == 202

            await eventually(accepted, timeout_s=RECOVERY_S, message="retry not accepted")
        numbers = await run.measure(fault_ended)
        numbers["api_503"], numbers["api_202"] = statuses[503], statuses[202]
        _report(f"kill -9 PostgreSQL, down {POSTGRES_DOWN_S:.0f} s", numbers)
        assert statuses[503] > 0, statuses
    finally:
        await api.aclose()


async def test_kill_valkey(chaos: Chaos) -> None:
    api = Api(chaos.stack.api_url, chaos.stack.sim_url)
    supervisor = chaos.supervisor
    try:
        run = await Run(api).setup()
        supervisor.hold("valkey")
        try:
            old = _kill(supervisor.server("valkey"))
            await _not_ready(f"{chaos.stack.api_url}/readyz", "redis")
            # Sign-ins fail open to the local limiter; orders are accepted and copied.
            await api.user("follower")
            refused, statuses = await _during_outage(run, VALKEY_DOWN_S / 2)
            for _ in range(ORDERS):
                assert (await run.order()).status_code == 202
            await asyncio.sleep(VALKEY_DOWN_S / 2)  # the outage's length is the scenario
        finally:
            supervisor.release("valkey")
        fault_ended = await _back(supervisor, "valkey", old)
        numbers = await run.measure(fault_ended)
        numbers["api_503"], numbers["api_202"] = statuses[503], statuses[202]
        _report(f"kill -9 Valkey, down {VALKEY_DOWN_S:.0f} s", numbers)
        assert not refused, statuses
    finally:
        await api.aclose()


async def _dead_lettered(ops_url: str) -> float:
    async with httpx.AsyncClient(timeout=5) as http:
        text = (await http.get(f"{ops_url}/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("copytrade_orders_dead_lettered_total{")
    )


async def test_postgres_down_past_the_dead_letter_limit(chaos: Chaos) -> None:
    """Orders accepted, then PostgreSQL down while a replicator (COPYTRADE_DEAD_LETTER_AFTER=3)
    works on them: every delivery fails, past the limit, and none can be parked (parking writes
    to the database), so they keep being redelivered with backoff for the whole outage (no
    JetStream delivery limit drops them); once PostgreSQL is back each is copied exactly once,
    directly or after being parked and republished by the sweeper (`parked` in the report)."""
    api = Api(chaos.stack.api_url, chaos.stack.sim_url)
    supervisor = chaos.supervisor
    stack = chaos.stack
    try:
        await asyncio.to_thread(wait_http, f"{stack.api_url}/readyz", 60, [])
        run = await Run(api).setup()
        for worker in stack.workers_alive():  # one replicator, with a low dead-letter limit
            worker.signal(signal.SIGTERM)
            worker.wait(30)
        ops_port = free_port()
        worker = stack.start_worker(
            {
                "COPYTRADE_METRICS_PORT": str(ops_port),
                "COPYTRADE_DEAD_LETTER_AFTER": str(DEAD_LETTER_AFTER),
            }
        )
        ops_url = f"http://127.0.0.1:{ops_port}"

        await asyncio.to_thread(wait_http, f"{ops_url}/readyz", 60, [worker])
        worker.signal(signal.SIGSTOP)  # accepted orders wait in JetStream …
        try:
            for _ in range(ORDERS):
                assert (await run.order()).status_code == 202
            supervisor.hold("postgres")
            old = _kill(supervisor.server("postgres"))
        finally:
            worker.signal(signal.SIGCONT)  # … and are worked on while PostgreSQL is down
        try:
            await asyncio.sleep(POSTGRES_LONG_DOWN_S)  # the outage's length is the scenario
        finally:
            supervisor.release("postgres")
        fault_ended = await _back(supervisor, "postgres", old)
        numbers = await run.measure(fault_ended)
        numbers["parked"] = await _dead_lettered(ops_url)
        _report(f"kill -9 PostgreSQL, down {POSTGRES_LONG_DOWN_S:.0f} s", numbers)
        # Each order failed past the dead-letter limit while the database was down (parking it
        # needs the database too), and was still copied once it came back.
        assert worker.log_path is not None
        log = worker.log_path.read_text()
        failures = {o: log.count(f"replication of order {o} failed") for o in run.accepted}
        assert min(failures.values()) >= DEAD_LETTER_AFTER, failures
    finally:
        await api.aclose()


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    workers = []
    for child in (int(p) for p in text.split()):
        try:  # the server's workers, not multiprocessing's resource tracker
            if b"resource_tracker" not in Path(f"/proc/{child}/cmdline").read_bytes():
                workers.append(child)
        except FileNotFoundError:
            pass
    return workers


def test_api_workers_die_with_their_parent(chaos: Chaos) -> None:
    """kill -9 the API's main process: its workers stop too (no orphan keeps the port)."""
    from services.dev.processes import Child
    from tests.helpers import wait_http, wait_until

    port = free_port()
    env = {**chaos.stack.env, "COPYTRADE_API_PORT": str(port), "COPYTRADE_API_WORKERS": "2"}
    api = Child("api-2", "services.api", env, chaos.stack.log_dir / "api-2.log")
    api.start()
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", 60, [api])
        workers = wait_until(
            lambda: len(_children(api.pid)) >= 2 and _children(api.pid), timeout_s=60
        )
        os.kill(api.pid, signal.SIGKILL)
        api.wait(5)

        def gone() -> bool:
            return not any(Path(f"/proc/{w}").exists() and not _zombie(w) for w in workers)

        wait_until(gone, timeout_s=30, message=f"API workers {workers} outlived their parent")
    finally:
        api.signal(signal.SIGKILL)
        api.wait(5)
