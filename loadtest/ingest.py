"""Accepted orders per second at the ingest API: N concurrent httpx clients, no think time.

Against a running `make run`: `python -m loadtest.ingest --concurrency 8 --seconds 10`.
It registers a master with one (fake) simulator account and no followers, then POSTs market
orders as fast as the API answers and prints throughput and latency percentiles. Stop the
replicators first (or not) depending on whether you want the API alone.

Its own stack instead (the launcher on free ports, a temporary data directory), and the API
and replicator processes sampled by py-spy while the orders run (`py-spy record -f raw`,
250 Hz, one file each, api-* and replicator-*; rank the frames with scripts/profile_summary.py):

    python -m loadtest.ingest --launch --workers 1 --profile bench-results/ingest-profile

`--healthz`: the same clients send `GET /healthz` instead (no database, no JetStream, no
replicator work): what this machine's client, server and framework alone reach, the ceiling
any order path through them stays under.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from loadtest.bench import cpu_seconds, start_profilers, stop_profilers
from loadtest.machine import capacity, describe
from loadtest.stack import Launcher, cpu_by_component, descendants


async def run(
    url: str,
    sim_url: str,
    concurrency: int,
    seconds: float,
    profile: Path | None = None,
    profile_pids: tuple[int, ...] = (),
    stack_pid: int | None = None,
    replicator_pids: tuple[int, ...] = (),
    healthz: bool = False,
) -> None:
    limits = httpx.Limits(max_connections=concurrency + 4)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        email = f"ingest-{uuid.uuid4().hex[:10]}@example.test"
        credentials = {"email": email, "password": "ingest password"}
        r = await client.post("/v1/auth/register", json={**credentials, "role": "master"})
        r.raise_for_status()
        token = (await client.post("/v1/auth/token", json=credentials)).json()["access_token"]
        headers = {"authorization": f"Bearer {token}"}
        # A simulator account: linking verifies the keys at the broker.
        async with httpx.AsyncClient(base_url=sim_url) as sim:
            made = (await sim.post("/sim/accounts", json={"cash": "1e12"})).json()
        keys = {"key_id": made["key_id"], "secret_key": made["secret_key"]}
        account = await client.post(
            "/v1/accounts",
            headers=headers,
            json={
                "broker": "sim",
                "label": "ingest",
                "credentials": keys,
            },
        )
        account_id = account.json()["account_id"]
        latencies: list[float] = []
        end = time.monotonic() + seconds

        async def user() -> None:
            while time.monotonic() < end:
                started = time.perf_counter()
                if healthz:
                    probe = await client.get("/healthz")
                    if probe.status_code != 200:
                        raise RuntimeError(f"{probe.status_code}: {probe.text}")
                    latencies.append((time.perf_counter() - started) * 1000)
                    continue
                response = await client.post(
                    "/v1/orders",
                    headers=headers,
                    json={
                        "client_order_id": uuid.uuid4().hex,
                        "account_id": account_id,
                        "symbol": "INGEST",
                        "side": "buy",
                        "qty": "1",
                        "type": "market",
                        "time_in_force": "day",
                    },
                )
                if response.status_code != 202:
                    raise RuntimeError(f"{response.status_code}: {response.text}")
                latencies.append((time.perf_counter() - started) * 1000)

        began = time.monotonic()
        profilers = start_profilers(list(profile_pids), profile, concurrency, "api")
        profilers += start_profilers(list(replicator_pids), profile, concurrency, "replicator")
        cpu_before = sum(cpu_seconds(pid) for pid in profile_pids)
        parts_before = cpu_by_component(stack_pid) if stack_pid else {}
        own_before = _own_cpu()
        await asyncio.gather(*(user() for _ in range(concurrency)))
        elapsed = time.monotonic() - began
        api_cpu = sum(cpu_seconds(pid) for pid in profile_pids) - cpu_before
        own = _own_cpu() - own_before
        parts = cpu_by_component(stack_pid, since=parts_before) if stack_pid else {}
        stop_profilers(profilers)
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))]

    what = "GET /healthz answered" if healthz else "accepted orders"
    print(
        f"concurrency {concurrency}: {len(latencies) / elapsed:.0f} {what}/s, "
        f"p50 {pct(50):.1f} ms, p99 {pct(99):.1f} ms ({len(latencies)} requests)"
        + (f", API CPU {api_cpu / len(latencies) * 1000:.2f} ms/request" if profile_pids else "")
    )
    if parts:
        parts["load generator"] = own
        per_order = {k: v / len(latencies) * 1e6 for k, v in parts.items() if v > 0}
        ranked = sorted(per_order.items(), key=lambda kv: -kv[1])
        shown = ", ".join(f"{k} {v:.0f}" for k, v in ranked)
        print(f"CPU µs per request, whole machine {sum(per_order.values()):.0f}: {shown}")


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system


def main() -> None:
    parser = argparse.ArgumentParser(description="ingest API throughput")
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--sim", default="http://127.0.0.1:8100", help="simulator (no --launch)")
    parser.add_argument("--launch", action="store_true", help="start a stack of its own")
    parser.add_argument("--workers", type=int, default=1, help="replicators (with --launch)")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy the API (--launch)")
    parser.add_argument("--healthz", action="store_true", help="GET /healthz instead of orders")
    args = parser.parse_args()
    if not args.launch:
        asyncio.run(run(args.url, args.sim, args.concurrency, args.seconds, healthz=args.healthz))
        return
    print(describe(capacity()), flush=True)  # before the stack starts: the machine alone
    data_dir = Path(tempfile.mkdtemp(prefix="copytrade-ingest-"))
    launcher = Launcher(
        data_dir,
        {
            "COPYTRADE_DEMO_FOLLOWERS": "0",
            "COPYTRADE_WORKERS": str(args.workers),
            "COPYTRADE_LOG_LEVEL": "WARNING",
            "COPYTRADE_PASSWORD_HASH_N": "1024",
        },
    )
    try:
        launcher.start()
        # The API's serving processes: `python -m services.api` and, with more than one
        # worker, the workers its supervisor spawned.
        apis = launcher.pids("services.api")
        served = tuple(pid for api in apis for pid in (api, *descendants(api)))
        asyncio.run(
            run(
                launcher.api_url,
                launcher.sim_url,
                args.concurrency,
                args.seconds,
                args.profile,
                served,
                launcher.process.pid if launcher.process else None,
                tuple(launcher.pids("services.worker.replicator")),
                args.healthz,
            )
        )
    finally:
        launcher.stop()


if __name__ == "__main__":
    main()
