"""Transport comparison: client CPU per broker request and fan-out wall time, side by side.

Sends N orders at once to the simulator (its own process, `python -m brokers.sim` on a free port,
latency 20 ms) through each candidate, several rounds after a warm-up round, and prints the
median client CPU µs per request (time.process_time of this process, every thread counted: the
Rust clients do their I/O on threads of their own) and the median wall time per round. The
candidates' rounds are interleaved (one round of each in turn), so load drifting on a shared
machine reaches all of them alike. The
candidates that go through the real Alpaca adapter answer the question the README decides
("keep httpx as the adapters' API, or move the hot path"); the raw ones are the floors: an
asyncio HTTP/1.1 client over warm keep-alive connections, and plain pyreqwest / curl_cffi calls
over HTTP/2 without any adapter, and rnet (another Rust client, on its own tokio runtime).

    .venv/bin/python -m loadtest.transports --n 500 --rounds 7 [--only NAME ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from brokers.alpaca.client import AlpacaBroker
from brokers.http import HttpApi, HttpClientPool, HttpSettings
from loadtest.bench import RESULTS, RawClient, cpu_seconds
from loadtest.stack import cpu_by_component, start_simulator, stop
from replication.model import OrderRequest
from schemas.common import OrderType, Side, TimeInForce

Account = dict[str, str]
# A candidate: given the simulator URL and the accounts, a round sender and a closer.
Round = Callable[[], Awaitable[Any]]
BODY = {"symbol": "AAPL", "qty": "1", "side": "buy", "type": "market", "time_in_force": "day"}


def _keys(a: Account) -> dict[str, str]:
    return {"APCA-API-KEY-ID": a["key_id"], "APCA-API-SECRET-KEY": a["secret_key"]}


def _raw_posts(accounts: list[Account]) -> tuple[bytes, list[dict[str, str]]]:
    """What each raw candidate sends: one JSON order body, and every account's keys as the
    headers of a JSON post."""
    body = json.dumps(BODY).encode()
    return body, [{**_keys(a), "content-type": "application/json"} for a in accounts]


def _requests(n: int) -> list[OrderRequest]:
    return [
        OrderRequest(
            uuid.uuid4().hex[:20], "AAPL", Side.BUY, Decimal(1), OrderType.MARKET, TimeInForce.DAY
        )
        for _ in range(n)
    ]


def _through_adapter(http: HttpApi, accounts: list[Account]) -> Round:
    brokers = [AlpacaBroker(http, a["key_id"], a["secret_key"]) for a in accounts]

    async def one_round() -> None:
        requests = _requests(len(brokers))
        await asyncio.gather(*(b.place_order(r) for b, r in zip(brokers, requests, strict=True)))

    return one_round


async def pool_candidate(
    url: str, accounts: list[Account], settings: HttpSettings
) -> tuple[Round, Callable[[], Awaitable[None]]]:
    pool = HttpClientPool(settings)
    return _through_adapter(pool.client(url), accounts), pool.aclose


async def httpx_over_pyreqwest(
    url: str, accounts: list[Account]
) -> tuple[Round, Callable[[], Awaitable[None]]]:
    """httpx's API kept, pyreqwest's HTTP/2 as its transport (pyreqwest's own adapter)."""
    from pyreqwest.client import ClientBuilder
    from pyreqwest.compatibility.httpx import HttpxTransport

    transport = HttpxTransport(ClientBuilder().http2_prior_knowledge().build())
    client = httpx.AsyncClient(base_url=url, transport=transport, timeout=10)
    return _through_adapter(client, accounts), client.aclose


async def raw_pyreqwest(
    url: str, accounts: list[Account]
) -> tuple[Round, Callable[[], Awaitable[None]]]:
    from pyreqwest.client import ClientBuilder

    client = ClientBuilder().base_url(url + "/").http2_prior_knowledge().build()
    body, headers = _raw_posts(accounts)

    async def one(h: dict[str, str]) -> bytes:
        response = await client.post("v2/orders").headers(h).body_bytes(body).build().send()
        return (await response.bytes()).to_bytes()

    async def one_round() -> None:
        await asyncio.gather(*(one(h) for h in headers))

    return one_round, client.close


async def raw_rnet(
    url: str, accounts: list[Account]
) -> tuple[Round, Callable[[], Awaitable[None]]]:
    import rnet

    client = rnet.Client(http2_only=True)  # prior knowledge over http://
    body, headers = _raw_posts(accounts)
    target = url + "/v2/orders"

    async def one(h: dict[str, str]) -> bytes:
        response = await client.post(target, headers=h, body=body)
        if response.status != 200:
            raise RuntimeError(f"rnet: {response.status}")
        return await response.bytes()

    async def one_round() -> None:
        await asyncio.gather(*(one(h) for h in headers))

    async def close() -> None:
        pass

    return one_round, close


async def raw_niquests(
    url: str, accounts: list[Account]
) -> tuple[Round, Callable[[], Awaitable[None]]]:
    """Measured only where niquests is installed: not in the bench extras, because its
    urllib3-future replaces the `urllib3` package that requests and Locust use there."""
    import niquests  # type: ignore[import-not-found]

    session = niquests.AsyncSession(multiplexed=True, disable_http1=True, disable_http3=True)
    body, headers = _raw_posts(accounts)
    target = url + "/v2/orders"

    async def one_round() -> None:
        responses = await asyncio.gather(
            *(session.post(target, data=body, headers=h) for h in headers)
        )
        await session.gather(*responses)
        if any(r.status_code != 200 for r in responses):
            raise RuntimeError("niquests: an order was not accepted")

    async def close() -> None:
        await session.close()

    return one_round, close


async def raw_curl_cffi(
    url: str, accounts: list[Account]
) -> tuple[Round, Callable[[], Awaitable[None]]]:
    from curl_cffi import CurlHttpVersion
    from curl_cffi.requests import AsyncSession

    session: AsyncSession[Any] = AsyncSession(
        base_url=url, http_version=CurlHttpVersion.V2_PRIOR_KNOWLEDGE, max_clients=len(accounts)
    )
    body, headers = _raw_posts(accounts)

    async def one_round() -> None:
        await asyncio.gather(*(session.post("/v2/orders", data=body, headers=h) for h in headers))

    async def close() -> None:
        await session.close()

    return one_round, close


async def raw_floor(
    url: str, accounts: list[Account]
) -> tuple[Round, Callable[[], Awaitable[None]]]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    raw = RawClient(host, int(port))
    await raw.warm(min(len(accounts), 500))
    body = json.dumps(BODY).encode()

    async def one_round() -> None:
        await asyncio.gather(*(raw.post("/v2/orders", _keys(a), body) for a in accounts))

    async def close() -> None:
        raw.close()

    return one_round, close


CANDIDATES: dict[str, Callable[[str, list[Account]], Awaitable[Any]]] = {
    "adapter + httpx HTTP/2 (httpcore, h2)": lambda u, a: pool_candidate(
        u, a, HttpSettings(transport="httpx", max_connections=len(a))
    ),
    "adapter + httpx API over pyreqwest HTTP/2": httpx_over_pyreqwest,
    "adapter + H2Client (pyreqwest HTTP/2, the default)": lambda u, a: pool_candidate(
        u, a, HttpSettings(transport="reqwest")
    ),
    "raw pyreqwest HTTP/2": raw_pyreqwest,
    "raw curl_cffi HTTP/2": raw_curl_cffi,
    "raw rnet HTTP/2": raw_rnet,
    "raw niquests HTTP/2 (where installed)": raw_niquests,
    "raw asyncio HTTP/1.1 (floor)": raw_floor,
}


def simulator_cpu(pid: int) -> float:
    """CPU seconds of the simulator and its server's worker processes."""
    return cpu_seconds(pid) + sum(cpu_by_component(pid).values())


async def measure(
    n: int, rounds: int, latency_ms: float, only: list[str]
) -> dict[str, dict[str, float]]:
    sim, url = start_simulator(Path(tempfile.gettempdir()) / "transports-sim.log")
    results: dict[str, dict[str, float]] = {}
    try:
        async with httpx.AsyncClient(base_url=url) as admin:
            accounts = [
                (await admin.post("/sim/accounts", json={"cash": "1e9"})).json() for _ in range(n)
            ]
            await admin.put("/sim/faults", json={"latency_ms": latency_ms})
        # Every candidate set up first, then the rounds interleaved (one round of each in
        # turn): a shared machine's load drifts, and this way every candidate sees the same.
        chosen = {}
        for name, make in CANDIDATES.items():
            if only and not any(o in name for o in only):
                continue
            try:
                chosen[name] = await make(url, accounts)
            except ImportError as exc:
                print(f"{name}: skipped ({exc})", flush=True)
        cpu: dict[str, list[float]] = {name: [] for name in chosen}
        sim_cpu: dict[str, list[float]] = {name: [] for name in chosen}
        wall: dict[str, list[float]] = {name: [] for name in chosen}
        for round_ in range(rounds + 1):
            for name, (one_round, _) in chosen.items():
                started_sim = simulator_cpu(sim.pid)
                started_cpu, started = time.process_time(), time.perf_counter()
                await one_round()
                if round_:  # the first round opens the connections
                    cpu[name].append((time.process_time() - started_cpu) / n * 1e6)
                    wall[name].append((time.perf_counter() - started) * 1000)
                    sim_cpu[name].append((simulator_cpu(sim.pid) - started_sim) / n * 1e6)
        for name, (_, close) in chosen.items():
            await close()
            results[name] = {
                "cpu_us_per_request": round(statistics.median(cpu[name]), 1),
                "wall_ms": round(statistics.median(wall[name]), 1),
                "simulator_cpu_us_per_request": round(statistics.median(sim_cpu[name]), 1),
            }
            print(name, results[name], flush=True)
    finally:
        stop(sim, 10)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--only", nargs="*", default=[], help="substrings of candidate names")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop, as the workers do")
    args = parser.parse_args()
    coro = measure(args.n, args.rounds, args.latency_ms, args.only)
    if args.uvloop:
        import uvloop

        results = uvloop.run(coro)
    else:
        results = asyncio.run(coro)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "transports.json").write_text(
        json.dumps({"n": args.n, "rounds": args.rounds, "results": results}, indent=2)
    )
    floor = results.get("raw asyncio HTTP/1.1 (floor)", {}).get("cpu_us_per_request")
    print(
        f"\n{'candidate':<52} {'CPU µs/request':>15} {'x floor':>8} {'wall ms':>9} "
        f"{'simulator µs/request':>21}"
    )
    for name, r in results.items():
        ratio = f"{r['cpu_us_per_request'] / floor:.2f}" if floor else "-"
        print(
            f"{name:<52} {r['cpu_us_per_request']:>15} {ratio:>8} {r['wall_ms']:>9} "
            f"{r['simulator_cpu_us_per_request']:>21}"
        )


if __name__ == "__main__":
    main()
