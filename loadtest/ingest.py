"""Accepted orders per second at the ingest API: N concurrent httpx clients, no think time.

Against a running `make run`: `python -m loadtest.ingest --concurrency 8 --seconds 10`.
It registers a master with one simulator account (created over `--sim`/sim/accounts: linking
verifies the keys at the broker) and no followers, then POSTs market
orders as fast as the API answers and prints throughput and latency percentiles. Stop the
replicators first (or not) depending on whether you want the API alone.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import httpx


async def sim_keys(sim_url: str) -> dict[str, str]:
    """A fresh simulator account's keys (linking an account verifies them at the broker)."""
    async with httpx.AsyncClient(base_url=sim_url, timeout=10) as sim:
        response = await sim.post("/sim/accounts", json={"cash": "100000000"})
        response.raise_for_status()
        keys = response.json()
    return {"key_id": keys["key_id"], "secret_key": keys["secret_key"]}


async def run(url: str, concurrency: int, seconds: float, sim_url: str) -> None:
    limits = httpx.Limits(max_connections=concurrency + 4)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        email = f"ingest-{uuid.uuid4().hex[:10]}@example.test"
        credentials = {"email": email, "password": "ingest password"}
        r = await client.post("/v1/auth/register", json={**credentials, "role": "master"})
        r.raise_for_status()
        token = (await client.post("/v1/auth/token", json=credentials)).json()["access_token"]
        headers = {"authorization": f"Bearer {token}"}
        account = await client.post(
            "/v1/accounts",
            headers=headers,
            json={
                "broker": "sim",
                "label": "ingest",
                "credentials": await sim_keys(sim_url),
            },
        )
        account.raise_for_status()
        account_id = account.json()["account_id"]
        latencies: list[float] = []
        end = time.monotonic() + seconds

        async def user() -> None:
            while time.monotonic() < end:
                started = time.perf_counter()
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
        await asyncio.gather(*(user() for _ in range(concurrency)))
        elapsed = time.monotonic() - began
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))]

    print(
        f"concurrency {concurrency}: {len(latencies) / elapsed:.0f} accepted orders/s, "
        f"p50 {pct(50):.1f} ms, p99 {pct(99):.1f} ms ({len(latencies)} orders)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="ingest API throughput")
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--sim", default="http://127.0.0.1:8100")
    args = parser.parse_args()
    asyncio.run(run(args.url, args.concurrency, args.seconds, args.sim))


if __name__ == "__main__":
    main()
