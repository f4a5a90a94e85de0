"""What admitting one gathered batch of broker calls costs a worker, on an embedded Valkey of its
own under uvloop: `--calls` calls of an Alpaca-like account (a 429 gate and an account budget),
as the fourth pass sent them (the gate's script for every call in one pipeline, then the
budget's script for every call in a second one; the gate's logic is now ADMISSION_SCRIPT with
the gate's key only) and as now (one ADMISSION_SCRIPT per call, one pipeline:
services/infra/ratelimit.py), each with redis-py's pure-Python reply parser and with hiredis (a
dependency since the fifth pass).

Sequential batches on one client, alternating the ways in rounds so drifting load reaches all
alike; medians of every round's median (µs per batch: mostly the worker's own CPU).

    .venv/bin/python -m scripts.admission_cost [--calls 17] [--n 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import uvloop
from redis._parsers import _AsyncHiredisParser, _AsyncRESP2Parser

from services.dev.embedded import start_valkey
from services.infra.budget_scripts import ADMISSION_SCRIPT, BUCKET_SCRIPT
from services.infra.cooldown import ANSWER_MS

# capacity, refill per ms, cost, longest wait (ms): a bucket that always admits, so every batch
# does the same work (a reservation and its writes)
_BUCKET = [1e9, 1.0, 1, 6000]


def _ways(redis: aioredis.Redis, shas: dict[str, str], calls: int) -> dict[str, Any]:
    run = uuid.uuid4().hex
    gates = [f"bench:{run}:gate:{i}" for i in range(calls)]
    budgets = [f"bench:{run}:budget:{i}" for i in range(calls)]
    answer_ms = ANSWER_MS

    async def two_pipelines() -> None:
        pipe = redis.pipeline(transaction=False)
        for gate in gates:
            pipe.evalsha(shas["admission"], 1, gate, answer_ms)
        await pipe.execute(raise_on_error=False)
        pipe = redis.pipeline(transaction=False)
        for budget in budgets:
            pipe.evalsha(shas["bucket"], 1, budget, *_BUCKET)
        await pipe.execute(raise_on_error=False)

    async def one_pipeline() -> None:
        pipe = redis.pipeline(transaction=False)
        for gate, budget in zip(gates, budgets, strict=True):
            pipe.evalsha(shas["admission"], 2, gate, budget, answer_ms, *_BUCKET)
        await pipe.execute(raise_on_error=False)

    return {"gate, then budget (two pipelines)": two_pipelines, "admission (one)": one_pipeline}


async def _median_us(way: Callable[[], Awaitable[None]], n: int) -> float:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        await way()
        samples.append((time.perf_counter() - started) * 1e6)
    return statistics.median(samples)


async def measure(url: str, calls: int, n: int, rounds: int) -> dict[str, list[float]]:
    clients = {
        "python parser": aioredis.from_url(url, parser_class=_AsyncRESP2Parser),
        "hiredis": aioredis.from_url(url, parser_class=_AsyncHiredisParser),
    }
    first = next(iter(clients.values()))
    shas = {
        "bucket": await first.script_load(BUCKET_SCRIPT),
        "admission": await first.script_load(ADMISSION_SCRIPT),
    }
    results: dict[str, list[float]] = {}
    try:
        for _ in range(rounds):
            for parser, client in clients.items():
                for name, way in _ways(client, shas, calls).items():
                    results.setdefault(f"{name}, {parser}", []).append(await _median_us(way, n))
    finally:
        for client in clients.values():
            await client.aclose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=17)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        server = start_valkey(Path(directory) / "valkey")
        try:
            results = uvloop.run(measure(server.url, args.calls, args.n, args.rounds))
        finally:
            server.stop()
    for name, values in results.items():
        shown = ", ".join(f"{v:.0f}" for v in values)
        print(f"{args.calls} calls, {name:48} {statistics.median(values):5.0f} µs ({shown})")


if __name__ == "__main__":
    main()
