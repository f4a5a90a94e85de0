"""`make bench`: fan-out latency against the simulator, next to the floor a raw client reaches.

Starts the embedded stack (own NATS, PostgreSQL, Valkey, simulator in its own process, API,
replicators, sweeper), sets the simulator's latency to 20 ms, and for each N creates a master and
N followers, then places orders one after another and measures, per order:

- POST returned → first follower order arrived at the simulator (the simulator's clock, same host)
- POST returned → all legs settled (the `order.updated` event with status `replicated`)

and, per N: worker CPU per leg (from /proc), worker peak RSS, and the floor: a minimal raw
asyncio HTTP/1.1 client sending the same N orders to the same simulator over warm keep-alive
connections. Results go to bench-results/bench.json and bench-results/bench.png.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import resource
import secrets
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nats

from services.dev.demo import MASTER_PASSWORD, _sim_keys, seed
from services.dev.embedded import free_port, start_stack
from services.dev.processes import Child, stop_all
from services.infra import bus
from services.infra.crypto import CredentialCipher
from services.infra.db.engine import make_engine
from services.infra.db.migrate import upgrade
from services.infra.settings import Settings

RESULTS = Path(__file__).resolve().parents[1] / "bench-results"


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

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )

    async def warm(self, n: int) -> None:
        for connection in await asyncio.gather(
            *(asyncio.open_connection(self.host, self.port) for _ in range(n))
        ):
            self.pool.put_nowait(connection)

    async def post(self, path: str, headers: dict[str, str], body: bytes) -> int:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        request = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: "
            f"application/json\r\nContent-Length: {len(body)}\r\n{head}\r\n"
        ).encode() + body
        reader, writer = await self.pool.get()
        for _ in range(3):  # a kept-alive connection the server closed: open a fresh one
            writer.write(request)
            status_line = await reader.readline()
            if status_line:
                break
            writer.close()
            reader, writer = await asyncio.open_connection(self.host, self.port)
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
    """One master with N followers on the simulator, seeded once and measured per worker count."""

    n: int
    master_id: str
    master_account_id: str
    master_sim: str
    master_email: str
    keys: list[tuple[str, str]]


async def seed_group(n: int, env: dict[str, str], api_url: str, sim_url: str) -> Group:
    engine = make_engine(env["COPYTRADE_DATABASE_URL"], pool_size=2, max_overflow=0)
    group = f"bench{n}"
    secret = env["COPYTRADE_JWT_SECRET"]
    try:
        demo = await seed(
            engine,
            CredentialCipher.from_setting(env["COPYTRADE_CREDENTIAL_KEYS"]),
            sim_url,
            secret,
            n,
            1024,
            group=group,
        )
    finally:
        await engine.dispose()
    async with httpx.AsyncClient(base_url=sim_url, timeout=60) as sim:
        master_key = _sim_keys(secret, f"{group}/master")
        master_sim = (
            await sim.get(
                "/v2/account",
                headers={"APCA-API-KEY-ID": master_key[0], "APCA-API-SECRET-KEY": master_key[1]},
            )
        ).json()["id"]
    keys = [_sim_keys(secret, f"{group}/follower{i:04d}") for i in range(1, n + 1)]
    return Group(n, demo.master_id, demo.master_account_id, master_sim, demo.master_email, keys)


async def measure(
    g: Group, orders: int, env: dict[str, str], api_url: str, sim_url: str, workers: list[Child]
) -> dict[str, Any]:
    """POST → first follower order and POST → all settled for `orders` sequential orders."""
    http = httpx.AsyncClient(base_url=api_url, timeout=60)
    sim = httpx.AsyncClient(base_url=sim_url, timeout=60)
    # A fresh token per run: a long benchmark outlives one access token.
    signed_in = await http.post(
        "/v1/auth/token", json={"email": g.master_email, "password": MASTER_PASSWORD}
    )
    auth = {"authorization": f"Bearer {signed_in.json()['access_token']}"}
    nc = await nats.connect(env["COPYTRADE_NATS_URL"])
    settled: dict[str, float] = {}
    waiters: dict[str, asyncio.Event] = {}

    async def on_event(msg: Any) -> None:
        event = json.loads(msg.data)
        if event["status"] == "replicated" and event["order_id"] not in settled:
            settled[event["order_id"]] = time.time()
            if event["order_id"] in waiters:
                waiters[event["order_id"]].set()

    await nc.subscribe(f"events.orders.{g.master_id}", cb=on_event)

    async def one(symbol: str) -> tuple[float, float]:
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
        waiters[order_id] = asyncio.Event()
        if order_id not in settled:
            await asyncio.wait_for(waiters[order_id].wait(), timeout=120)
        arrivals = [
            t["received_at"]
            for t in (
                await sim.get("/sim/timings", params={"symbol": symbol, "since": sent})
            ).json()
            if t["account_id"] != g.master_sim
        ]
        return (min(arrivals) - returned) * 1000, (settled[order_id] - returned) * 1000

    # A trader's day: a handful of symbols, traded again and again (orders are sequential, so
    # an order's arrivals are the ones after its POST was sent).
    symbols = [f"B{g.n}S{i}" for i in range(4)]
    for _ in range(len(workers) + 1):  # warm every worker's pools and caches
        for symbol in symbols:
            await one(symbol)
    cpu_before = sum(cpu_seconds(w.pid) for w in workers)
    first, all_settled = [], []
    for i in range(orders):
        f, s = await one(symbols[i % len(symbols)])
        first.append(f)
        all_settled.append(s)
        await asyncio.sleep(0.05)
    cpu_after = sum(cpu_seconds(w.pid) for w in workers)
    await nc.close()
    await http.aclose()
    await sim.aclose()
    return {
        "followers": g.n,
        "workers": len(workers),
        "orders": orders,
        "first_follower_ms": summary(first),
        "all_settled_ms": summary(all_settled),
        "worker_cpu_us_per_leg": round((cpu_after - cpu_before) / (g.n * orders) * 1e6, 1),
        "worker_peak_rss_mb": round(max(peak_rss_mb(w.pid) for w in workers), 1),
    }


async def floor(g: Group, orders: int, sim_url: str) -> dict[str, float]:
    """The same N orders from a raw client, warm connections, same simulator."""
    host, port = sim_url.removeprefix("http://").split(":")
    raw = RawClient(host, int(port))
    await raw.warm(min(g.n, 500))
    timings = []
    for i in range(min(orders, 30)):
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
        timings.append((time.perf_counter() - started) * 1000)
        assert set(statuses) == {200}, set(statuses)
    raw.close()
    return summary(timings)


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


async def main_async(args: argparse.Namespace) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    data_dir = Path(tempfile.mkdtemp(prefix="copytrade-bench-"))
    stack, urls = start_stack(data_dir)
    children: list[Child] = []
    try:
        await asyncio.to_thread(upgrade, urls["database"])
        api_port, sim_port = free_port(), free_port()
        env = {
            **os.environ,
            "COPYTRADE_NATS_URL": urls["nats"],
            "COPYTRADE_DATABASE_URL": urls["database"],
            "COPYTRADE_REDIS_URL": urls["redis"],
            "COPYTRADE_JWT_SECRET": secrets.token_urlsafe(48),
            "COPYTRADE_CREDENTIAL_KEYS": "b1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
            "COPYTRADE_API_PORT": str(api_port),
            "COPYTRADE_SIM_PORT": str(sim_port),
            "COPYTRADE_SIM_URL": f"http://127.0.0.1:{sim_port}",
            "COPYTRADE_LOG_LEVEL": "WARNING",
            "COPYTRADE_PASSWORD_HASH_N": "1024",
        }
        settings = Settings.from_env(env)
        nc = await bus.connect(urls["nats"], "bench")
        await bus.ensure_stream(nc.jetstream())
        await bus.ensure_consumer(
            nc.jetstream(), settings.consumer_ack_wait_s, settings.max_deliver
        )
        await nc.close()
        children = [
            Child("simulator", "brokers.sim", env, data_dir / "simulator.log"),
            Child("api", "services.api", env, data_dir / "api.log"),
            Child("sweeper", "services.worker.sweeper", env, data_dir / "sweeper.log"),
        ]
        for child in children:
            child.start()
        sim_url = f"http://127.0.0.1:{sim_port}"
        api_url = f"http://127.0.0.1:{api_port}"
        async with httpx.AsyncClient(timeout=5) as client:
            for url in (f"{sim_url}/healthz", f"{api_url}/healthz"):
                for _ in range(300):
                    try:
                        if (await client.get(url)).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    await asyncio.sleep(0.1)
            await client.put(f"{sim_url}/sim/faults", json={"latency_ms": args.latency_ms})
        results = []
        for n in args.followers:
            group = await seed_group(n, env, api_url, sim_url)
            floor_ms = await floor(group, args.orders, sim_url)
            for count in args.workers:
                # Fresh replicator processes per worker count (their CPU and RSS are measured).
                workers = [
                    Child(
                        f"replicator-{count}-{i}",
                        "services.worker.replicator",
                        env,
                        data_dir / f"replicator-{count}-{i}.log",
                    )
                    for i in range(count)
                ]
                for worker in workers:
                    worker.start()
                children += workers
                await asyncio.sleep(2)  # connected and pulling
                result = await measure(group, args.orders, env, api_url, sim_url, workers)
                result["floor_ms"] = floor_ms
                result["ratio_p50"] = round(result["all_settled_ms"]["p50"] / floor_ms["p50"], 2)
                print(json.dumps(result), flush=True)
                results.append(result)
                stop_all(workers)
        RESULTS.mkdir(exist_ok=True)
        report = {
            "machine": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "processor": platform.processor() or platform.machine(),
                "python": platform.python_version(),
            },
            "settings": {
                "workers": args.workers,
                "simulator_latency_ms": args.latency_ms,
                "orders_per_n": args.orders,
                "shard_size": settings.shard_size,
            },
            "results": results,
        }
        (RESULTS / "bench.json").write_text(json.dumps(report, indent=2))
        chart(results, RESULTS / "bench.png")
        print(
            f"\n{'N':>6} {'workers':>7} {'first p50':>10} {'settled p50':>12} {'p95':>8} "
            f"{'p99':>8} {'floor p50':>10} {'ratio':>6} {'cpu µs/leg':>11} {'rss MB':>7}"
        )
        for r in results:
            print(
                f"{r['followers']:>6} {r['workers']:>7} {r['first_follower_ms']['p50']:>10} "
                f"{r['all_settled_ms']['p50']:>12} {r['all_settled_ms']['p95']:>8} "
                f"{r['all_settled_ms']['p99']:>8} {r['floor_ms']['p50']:>10} "
                f"{r['ratio_p50']:>6} {r['worker_cpu_us_per_leg']:>11} "
                f"{r['worker_peak_rss_mb']:>7}"
            )
        print(f"\nresults: {RESULTS / 'bench.json'}, chart: {RESULTS / 'bench.png'}")
    finally:
        stop_all(children)
        stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="copytrade fan-out benchmark")
    parser.add_argument("--followers", type=int, nargs="+", default=[100, 500, 2000])
    parser.add_argument("--orders", type=int, default=30)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--latency-ms", type=float, default=20.0)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
