"""`make bench`: fan-out latency against the simulator, next to the floor a raw client reaches.

Talks to the stack only the way an outside client does. For each N and each replicator count it
starts the whole stack through its public entry point, `python -m services.dev.launcher`, on free
ports with its own data directory (embedded NATS, PostgreSQL, Valkey, the simulator, API,
replicators, sweeper, poller), configured by environment settings: COPYTRADE_WORKERS replicators
and COPYTRADE_DEMO_FOLLOWERS=N, so the launcher's demo seed creates the master and its N
followers (multiplier sizing, a max_qty cap). Once the launcher says it is running and /readyz
answers, everything goes over HTTP and WebSocket: the simulator's /sim/* admin API (latency
20 ms, the floor's accounts, arrival times), the ingest API (sign-in, POST /v1/orders) and the
master's dashboard socket (`order.updated`). It places orders one after another and measures,
per order:

- POST returned → first follower order arrived at the simulator (the simulator's clock, same host)
- POST returned → all legs settled (the `order.updated` event with status `replicated`, as
  received on the master's WebSocket)

and, per N: worker CPU per leg and worker peak RSS (from /proc, for the launcher's replicator
child processes), and the floor: a minimal raw asyncio HTTP/1.1 client sending the same N orders
to the same simulator, from N accounts of its own, over warm keep-alive connections.

    .venv/bin/python -m loadtest.bench --followers 20 --orders 5 --workers 1 2 [--tls]

--tls: real-broker conditions. The simulator serves https (a certificate it makes at start;
HTTP/2 and HTTP/1.1 by ALPN), the workers reach it over TLS (HTTP/2 multiplexes their legs over
one connection), and the floor is the raw HTTP/1.1 client over TLS, which needs one connection
per concurrent request. Both are also measured cold: the stack's first order after start (no
connection open yet, no cache warm) and the floor opening its N TLS connections inside the
timing.

Results go to bench-results/bench.json and bench-results/bench.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import websockets
from websockets.typing import Origin, Subprotocol

from loadtest.machine import capacity, describe
from loadtest.stack import MASTER_EMAIL, MASTER_PASSWORD, Launcher, cpu_by_component

RESULTS = Path(__file__).resolve().parents[1] / "bench-results"

# The CA file a --tls simulator wrote at start (None: plain http).
SIM_CA: dict[str, Path | None] = {"file": None}


def sim_tls(alpn: list[str] | None = None) -> ssl.SSLContext | None:
    """A context trusting the simulator's CA, or None without --tls."""
    if SIM_CA["file"] is None:
        return None
    context = ssl.create_default_context(cafile=str(SIM_CA["file"]))
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


# --profile DIR: py-spy samples every replicator while the measured orders run (not the warm-up),
# one raw collapsed-stack file per replicator and N (`py-spy record -f raw`, 250 Hz, native
# frames off); scripts/profile_summary.py ranks them.
PROFILE: dict[str, Path | None] = {"dir": None}


def start_profilers(
    pids: list[int], directory: Path | None, n: int, name: str = "replicator"
) -> list[subprocess.Popen[bytes]]:
    if directory is None:
        return []
    directory.mkdir(parents=True, exist_ok=True)
    # The venv's py-spy (the bench extra), else one on PATH.
    py_spy = Path(sys.executable).with_name("py-spy")
    if not py_spy.exists():
        py_spy = Path(shutil.which("py-spy") or py_spy)
    return [
        subprocess.Popen(  # noqa: S603 (our own py-spy, our own pids)
            [
                str(py_spy),
                "record",
                "-p",
                str(pid),
                "-r",
                "250",
                "-f",
                "raw",
                "--nonblocking",
                "-o",
                str(directory / f"{name}-n{n}-{pid}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid in pids
    ]


def stop_profilers(profilers: list[subprocess.Popen[bytes]]) -> None:
    for profiler in profilers:
        profiler.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
    for profiler in profilers:
        profiler.wait(30)


def sim_client(sim_url: str, timeout: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=sim_url, timeout=timeout, verify=sim_tls() or True)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(percentile(values, 50), 2),
        "p95": round(percentile(values, 95), 2),
        "p99": round(percentile(values, 99), 2),
        "n": len(values),
    }


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


class RawClient:
    """The floor: HTTP/1.1 over plain asyncio streams, a fixed pool of warm keep-alive
    connections (requests beyond the pool wait for a free connection), nothing else."""

    def __init__(
        self, host: str, port: int, tls: ssl.SSLContext | None = None, grow: bool = False
    ) -> None:
        """`tls`: HTTP/1.1 over TLS (ALPN offers http/1.1 only); `grow`: open a connection
        whenever none is idle (the cold floor) instead of waiting for one."""
        self.host, self.port, self.tls, self.grow = host, port, tls, grow
        self.pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )

    def _open(self) -> Any:
        return asyncio.open_connection(self.host, self.port, ssl=self.tls)

    async def warm(self, n: int) -> None:
        for connection in await asyncio.gather(*(self._open() for _ in range(n))):
            self.pool.put_nowait(connection)

    async def post(self, path: str, headers: dict[str, str], body: bytes) -> int:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        request = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: "
            f"application/json\r\nContent-Length: {len(body)}\r\n{head}\r\n"
        ).encode() + body
        if self.grow and self.pool.empty():
            reader, writer = await self._open()
        else:
            reader, writer = await self.pool.get()
        for _ in range(3):  # a kept-alive connection the server closed: open a fresh one
            writer.write(request)
            status_line = await reader.readline()
            if status_line:
                break
            writer.close()
            reader, writer = await self._open()
        length = 0
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        await reader.readexactly(length)
        self.pool.put_nowait((reader, writer))
        return int(status_line.split()[1])

    def close(self) -> None:
        while not self.pool.empty():
            self.pool.get_nowait()[1].close()


@dataclass
class Group:
    """The demo master and its N followers, seeded by the launcher; the floor's own N
    simulator accounts (created over /sim/accounts, the same simulator)."""

    n: int
    master_account_id: str
    keys: list[tuple[str, str]]


async def sign_in(http: httpx.AsyncClient) -> dict[str, str]:
    response = await http.post(
        "/v1/auth/token", json={"email": MASTER_EMAIL, "password": MASTER_PASSWORD}
    )
    response.raise_for_status()
    return {"authorization": f"Bearer {response.json()['access_token']}"}


async def seed_group(n: int, api_url: str, sim_url: str) -> Group:
    """What the launcher seeded (the demo master's account), plus N accounts for the floor."""
    async with httpx.AsyncClient(base_url=api_url, timeout=60) as http:
        auth = await sign_in(http)
        accounts = (await http.get("/v1/accounts", headers=auth)).json()
    semaphore = asyncio.Semaphore(50)
    async with sim_client(sim_url, 60) as sim:

        async def create() -> tuple[str, str]:
            async with semaphore:
                response = await sim.post("/sim/accounts", json={"cash": "100000"})
                response.raise_for_status()
                body = response.json()
                return body["key_id"], body["secret_key"]

        keys = list(await asyncio.gather(*(create() for _ in range(n))))
    return Group(n, accounts[0]["account_id"], keys)


class OrderEvents:
    """The master's dashboard WebSocket: when each order's `order.updated` said `replicated`."""

    def __init__(self) -> None:
        self.settled: dict[str, float] = {}
        self.waiters: dict[str, asyncio.Event] = {}
        self._task: asyncio.Task[None] | None = None
        self._socket: Any = None

    async def open(self, http: httpx.AsyncClient, auth: dict[str, str]) -> None:
        token = (await http.post("/v1/ws/token", headers=auth)).json()["token"]
        api_url = str(http.base_url).rstrip("/")
        self._socket = await websockets.connect(
            api_url.replace("http://", "ws://") + "/v1/ws",
            subprotocols=[Subprotocol("copytrade.v1"), Subprotocol(token)],
            origin=Origin(api_url),
            max_size=None,
        )
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self._socket:
            received = time.time()
            event = json.loads(raw)
            if event.get("type") == "resync":
                print("warning: the WebSocket queue overflowed (resync)", flush=True)
            if event.get("type") != "order.updated" or event["status"] != "replicated":
                continue
            if event["order_id"] not in self.settled:
                self.settled[event["order_id"]] = received
                self.waiter(event["order_id"]).set()

    def waiter(self, order_id: str) -> asyncio.Event:
        return self.waiters.setdefault(order_id, asyncio.Event())

    async def wait(self, order_id: str, timeout_s: float) -> float:
        await asyncio.wait_for(self.waiter(order_id).wait(), timeout=timeout_s)
        return self.settled[order_id]

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._socket is not None:
            await self._socket.close()


async def inspect_first_order(
    http: httpx.AsyncClient, sim: httpx.AsyncClient, auth: dict[str, str], order_id: str, n: int
) -> str | None:
    """Checks that the order reached the N followers the launcher seeded, and returns the
    simulator account of the master's own leg (left out of the follower arrivals): its broker
    order id from GET /v1/orders/{id}, looked up in /sim/orders."""
    broker_order_id = None
    for _ in range(100):
        order = (await http.get(f"/v1/orders/{order_id}", headers=auth)).json()
        if order["legs"]["total"] != n:
            raise RuntimeError(f"the order has {order['legs']['total']} legs, expected {n}")
        execution = order.get("master_execution")
        if execution is None or execution["broker_order_id"]:
            broker_order_id = execution and execution["broker_order_id"]
            break
        await asyncio.sleep(0.1)
    if not broker_order_id:
        return None
    for placed in (await sim.get("/sim/orders")).json():
        if placed["id"] == broker_order_id:
            return str(placed["account_id"])
    return None


async def measure(
    g: Group, orders: int, api_url: str, sim_url: str, workers: list[int], stack_pid: int
) -> dict[str, Any]:
    """POST → first follower order and POST → all settled for `orders` sequential orders."""
    http = httpx.AsyncClient(base_url=api_url, timeout=60)
    sim = sim_client(sim_url, 60)
    auth = await sign_in(http)  # a fresh token per run: a long benchmark outlives one token
    events = OrderEvents()
    await events.open(http, auth)
    master_sim: str | None = None

    async def one(symbol: str) -> tuple[float, float, str]:
        body = {
            "client_order_id": uuid.uuid4().hex,
            "account_id": g.master_account_id,
            "symbol": symbol,
            "side": "buy",
            "qty": "1",
            "type": "market",
            "time_in_force": "day",
        }
        sent = time.time()
        response = await http.post("/v1/orders", headers=auth, json=body)
        returned = time.time()
        if response.status_code != 202:
            raise RuntimeError(f"order refused: {response.status_code} {response.text}")
        order_id = response.json()["order_id"]
        settled = await events.wait(order_id, 120)
        arrivals = [
            t["received_at"]
            for t in (
                await sim.get("/sim/timings", params={"symbol": symbol, "since": sent})
            ).json()
            if t["account_id"] != master_sim
        ]
        return (min(arrivals) - returned) * 1000, (settled - returned) * 1000, order_id

    # A trader's day: a handful of symbols, traded again and again (orders are sequential, so
    # an order's arrivals are the ones after its POST was sent).
    symbols = [f"B{g.n}S{i}" for i in range(4)]
    cold: dict[str, float] = {}
    for round_ in range(len(workers) + 1):  # warm every worker's pools and caches
        for symbol in symbols:
            first_ms, settled_ms, order_id = await one(symbol)
            if round_ == 0 and symbol == symbols[0]:
                # The stack's first order: no broker connection open yet, caches empty.
                cold = {
                    "first_follower_ms": round(first_ms, 2),
                    "all_settled_ms": round(settled_ms, 2),
                }
                master_sim = await inspect_first_order(http, sim, auth, order_id, g.n)
    profilers = start_profilers(workers, PROFILE["dir"], g.n)
    cpu_before = sum(cpu_seconds(pid) for pid in workers)
    parts_before = cpu_by_component(stack_pid)
    first, all_settled = [], []
    for i in range(orders):
        f, s, _ = await one(symbols[i % len(symbols)])
        first.append(f)
        all_settled.append(s)
        await asyncio.sleep(0.05)
    cpu_after = sum(cpu_seconds(pid) for pid in workers)
    legs = g.n * orders
    machine = {  # every stack process's CPU per leg (the bench's own client not included)
        name: round(used / legs * 1e6, 1)
        for name, used in cpu_by_component(stack_pid, since=parts_before).items()
    }
    stop_profilers(profilers)
    await events.close()
    await http.aclose()
    await sim.aclose()
    return {
        "followers": g.n,
        "workers": len(workers),
        "orders": orders,
        "first_follower_ms": summary(first),
        "all_settled_ms": summary(all_settled),
        "cold": cold,
        "worker_cpu_us_per_leg": round((cpu_after - cpu_before) / legs * 1e6, 1),
        "stack_cpu_us_per_leg": dict(sorted(machine.items(), key=lambda kv: -kv[1])),
        "worker_peak_rss_mb": round(max(peak_rss_mb(pid) for pid in workers), 1),
    }


async def floor(g: Group, orders: int, sim_url: str) -> dict[str, Any]:
    """The same N orders from a raw client, same simulator: over warm connections (p50/p95/
    p99 of up to 30 rounds), and cold (three rounds, each opening its connections)."""
    host, port = sim_url.split("://", 1)[1].split(":")
    tls = sim_tls(alpn=["http/1.1"])
    cold = []
    for i in range(3):
        raw = RawClient(host, int(port), tls, grow=True)
        cold.append(await _floor_round(raw, g, f"C{i}"))
        raw.close()
    raw = RawClient(host, int(port), tls)
    await raw.warm(min(g.n, 500))
    timings = [await _floor_round(raw, g, str(i)) for i in range(min(orders, 30))]
    raw.close()
    return {**summary(timings), "cold_p50": round(statistics.median(cold), 2)}


async def _floor_round(raw: RawClient, g: Group, i: str) -> float:
    started = time.perf_counter()
    statuses = await asyncio.gather(
        *(
            raw.post(
                "/v2/orders",
                {"APCA-API-KEY-ID": k, "APCA-API-SECRET-KEY": s},
                json.dumps(
                    {
                        "symbol": f"F{g.n}X{i}",
                        "qty": "1",
                        "side": "buy",
                        "type": "market",
                        "time_in_force": "day",
                    }
                ).encode(),
            )
            for k, s in g.keys
        )
    )
    assert set(statuses) == {200}, set(statuses)
    return (time.perf_counter() - started) * 1000


def chart(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = sorted({r["workers"] for r in results})
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=110)
    for count, style in zip(counts, ("o-", "D-", "v-", "p-"), strict=False):
        mine = [r for r in results if r["workers"] == count]
        ns = [r["followers"] for r in mine]
        label = f"copytrade, {count} worker{'s' if count > 1 else ''}: POST → all settled"
        ax.plot(ns, [r["all_settled_ms"]["p50"] for r in mine], style, label=f"{label} (p50)")
        ax.fill_between(
            ns,
            [r["all_settled_ms"]["p50"] for r in mine],
            [r["all_settled_ms"]["p99"] for r in mine],
            alpha=0.12,
        )
    floors = {r["followers"]: r["floor_ms"] for r in results}
    ns = sorted(floors)
    ax.plot(ns, [floors[n]["p50"] for n in ns], "s--", label="floor: raw asyncio HTTP/1.1 (p50)")
    best = max(counts)
    mine = [r for r in results if r["workers"] == best]
    ax.plot(
        [r["followers"] for r in mine],
        [r["first_follower_ms"]["p50"] for r in mine],
        "^:",
        label=f"POST → first follower order, {best} workers (p50)",
    )
    ax.set_xlabel("followers")
    ax.set_ylabel("milliseconds (band: p50 to p99)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.set_title("Fan-out latency, simulator latency 20 ms, loopback")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def launcher_settings(n: int, workers: int) -> dict[str, str]:
    """The launcher's environment settings for one run: N demo followers, `workers`
    replicators, quiet logs, a cheap password hash for the seeded users."""
    return {
        "COPYTRADE_DEMO_FOLLOWERS": str(n),
        "COPYTRADE_WORKERS": str(workers),
        "COPYTRADE_LOG_LEVEL": os.environ.get("COPYTRADE_LOG_LEVEL", "WARNING"),
        "COPYTRADE_PASSWORD_HASH_N": "1024",
    }


async def run_one(
    n: int, count: int, data_dir: Path, args: argparse.Namespace, floors: dict[int, Any]
) -> dict[str, Any]:
    """One launcher with `count` replicators and N seeded followers, measured, then stopped.
    The data directory is kept per N: a restart finds the seed in place (the launcher's seed is
    idempotent and re-creates the simulator's in-memory accounts)."""
    launcher = Launcher(data_dir, launcher_settings(n, count), tls=args.tls)
    SIM_CA["file"] = launcher.ca_file
    PROFILE["dir"] = args.profile
    try:
        # In this thread: the launcher dies with the thread that started it (PR_SET_PDEATHSIG).
        launcher.start()
        async with sim_client(launcher.sim_url, 10) as sim:
            (await sim.put("/sim/faults", json={"latency_ms": args.latency_ms})).raise_for_status()
        group = await seed_group(n, launcher.api_url, launcher.sim_url)
        if n not in floors:
            floors[n] = await floor(group, args.orders, launcher.sim_url)
        workers = launcher.pids("services.worker.replicator")
        if len(workers) != count:
            raise RuntimeError(f"expected {count} replicator processes, found {workers}")
        await asyncio.sleep(2)  # connected and pulling
        assert launcher.process is not None
        result = await measure(
            group, args.orders, launcher.api_url, launcher.sim_url, workers, launcher.process.pid
        )
    finally:
        launcher.stop()
    result["floor_ms"] = floors[n]
    result["ratio_p50"] = round(result["all_settled_ms"]["p50"] / floors[n]["p50"], 2)
    return result


async def main_async(args: argparse.Namespace) -> None:
    # Ctrl-C raises KeyboardInterrupt wherever we are, also while waiting for the launcher
    # (asyncio's own handler would only cancel the task at its next await).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    measured = capacity()  # before any stack runs: the machine alone
    print(describe(measured), flush=True)
    data_root = Path(tempfile.mkdtemp(prefix="copytrade-bench-"))
    print(f"stack data and logs: {data_root}", flush=True)
    results: list[dict[str, Any]] = []
    floors: dict[int, Any] = {}
    for n in args.followers:
        for count in args.workers:
            # A fresh launcher per worker count: fresh replicator processes (their CPU and RSS
            # are measured), N followers seeded by the launcher itself.
            result = await run_one(n, count, data_root / f"n{n}", args, floors)
            print(json.dumps(result), flush=True)
            results.append(result)
    RESULTS.mkdir(exist_ok=True)
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "capacity": measured,
        },
        "settings": {
            "workers": args.workers,
            "simulator_latency_ms": args.latency_ms,
            "orders_per_n": args.orders,
            # the service default unless set in the environment (the launcher passes it on)
            "shard_size": os.environ.get("COPYTRADE_SHARD_SIZE", "default"),
            "tls": args.tls,
        },
        "results": results,
    }
    (RESULTS / "bench.json").write_text(json.dumps(report, indent=2))
    try:
        chart(results, RESULTS / "bench.png")
    except ImportError:
        print("no matplotlib (the bench extra): no chart", flush=True)
    print(
        f"\n{'N':>6} {'workers':>7} {'first p50':>10} {'settled p50':>12} {'p95':>8} "
        f"{'p99':>8} {'floor p50':>10} {'ratio':>6} {'cpu µs/leg':>11} {'rss MB':>7} "
        f"{'cold first':>10} {'cold settled':>12} {'floor cold':>10}"
    )
    for r in results:
        print(
            f"{r['followers']:>6} {r['workers']:>7} {r['first_follower_ms']['p50']:>10} "
            f"{r['all_settled_ms']['p50']:>12} {r['all_settled_ms']['p95']:>8} "
            f"{r['all_settled_ms']['p99']:>8} {r['floor_ms']['p50']:>10} "
            f"{r['ratio_p50']:>6} {r['worker_cpu_us_per_leg']:>11} "
            f"{r['worker_peak_rss_mb']:>7} {r['cold'].get('first_follower_ms', '-'):>10} "
            f"{r['cold'].get('all_settled_ms', '-'):>12} {r['floor_ms']['cold_p50']:>10}"
        )
    print(f"\nresults: {RESULTS / 'bench.json'}, chart: {RESULTS / 'bench.png'}")


def main() -> None:
    parser = argparse.ArgumentParser(description="copytrade fan-out benchmark")
    parser.add_argument("--followers", type=int, nargs="+", default=[100, 500, 2000])
    parser.add_argument("--orders", type=int, default=30)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--profile", type=Path, default=None, help="py-spy every replicator")
    parser.add_argument(
        "--tls", action="store_true", help="the simulator over https (HTTP/2 and HTTP/1.1 by ALPN)"
    )
    try:
        asyncio.run(main_async(parser.parse_args()))
    except KeyboardInterrupt:
        print("interrupted; the stack was stopped", flush=True)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
