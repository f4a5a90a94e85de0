"""Transport comparison: client CPU per broker request and fan-out wall time, by transport.

Sends N orders at once through the real Alpaca adapter to the simulator (its own process,
`python -m brokers.sim` on a free port, latency 20 ms), for each transport, several rounds after
a warm-up, and prints the median client CPU µs per request (time.process_time of this process)
and median wall time per round.
The floor is a raw asyncio HTTP/1.1 client over warm keep-alive connections.

    .venv/bin/python -m loadtest.transports --n 500 --rounds 7
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path

import httpx

from brokers.alpaca.client import AlpacaBroker
from brokers.http import HttpClientPool, HttpSettings
from loadtest.bench import RESULTS, RawClient
from loadtest.stack import start_simulator, stop
from replication.model import OrderRequest
from schemas.common import OrderType, Side, TimeInForce


async def measure(n: int, rounds: int, latency_ms: float) -> dict[str, dict[str, float]]:
    sim, url = start_simulator(Path(tempfile.gettempdir()) / "transports-sim.log")
    port = int(url.rsplit(":", 1)[1])
    results: dict[str, dict[str, float]] = {}
    try:
        async with httpx.AsyncClient(base_url=url) as admin:
            accounts = [
                (await admin.post("/sim/accounts", json={"cash": "1e9"})).json() for _ in range(n)
            ]
            await admin.put("/sim/faults", json={"latency_ms": latency_ms})
        for name in ("h2", "h1", "lean"):
            pool = HttpClientPool(HttpSettings(transport=name, max_connections=n, max_keepalive=n))
            http = pool.client(url)
            brokers = [AlpacaBroker(http, a["key_id"], a["secret_key"]) for a in accounts]
            cpu, wall = [], []
            for round_ in range(rounds + 1):
                requests = [
                    OrderRequest(
                        uuid.uuid4().hex[:20],
                        "AAPL",
                        Side.BUY,
                        Decimal(1),
                        OrderType.MARKET,
                        TimeInForce.DAY,
                    )
                    for _ in brokers
                ]
                started_cpu, started = time.process_time(), time.perf_counter()
                await asyncio.gather(
                    *(b.place_order(r) for b, r in zip(brokers, requests, strict=True))
                )
                if round_:  # the first round warms the pool
                    cpu.append((time.process_time() - started_cpu) / n * 1e6)
                    wall.append((time.perf_counter() - started) * 1000)
            await pool.aclose()
            results[name] = {
                "cpu_us_per_request": round(statistics.median(cpu), 1),
                "wall_ms": round(statistics.median(wall), 1),
            }
            print(name, results[name], flush=True)
        raw = RawClient("127.0.0.1", port)
        await raw.warm(min(n, 500))
        cpu, wall = [], []
        body = json.dumps(
            {"symbol": "AAPL", "qty": "1", "side": "buy", "type": "market", "time_in_force": "day"}
        ).encode()
        for round_ in range(rounds + 1):
            started_cpu, started = time.process_time(), time.perf_counter()
            await asyncio.gather(
                *(
                    raw.post(
                        "/v2/orders",
                        {"APCA-API-KEY-ID": a["key_id"], "APCA-API-SECRET-KEY": a["secret_key"]},
                        body,
                    )
                    for a in accounts
                )
            )
            if round_:
                cpu.append((time.process_time() - started_cpu) / n * 1e6)
                wall.append((time.perf_counter() - started) * 1000)
        raw.close()
        results["raw floor"] = {
            "cpu_us_per_request": round(statistics.median(cpu), 1),
            "wall_ms": round(statistics.median(wall), 1),
        }
        print("raw floor", results["raw floor"], flush=True)
    finally:
        stop(sim, 10)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    args = parser.parse_args()
    results = asyncio.run(measure(args.n, args.rounds, args.latency_ms))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "transports.json").write_text(
        json.dumps({"n": args.n, "rounds": args.rounds, "results": results}, indent=2)
    )
    print(f"\n{'transport':<10} {'client CPU µs/request':>22} {'wall ms (N at once)':>20}")
    for name, r in results.items():
        print(f"{name:<10} {r['cpu_us_per_request']:>22} {r['wall_ms']:>20}")


if __name__ == "__main__":
    main()
