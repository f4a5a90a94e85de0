"""What a statement costs through SQLAlchemy's `AsyncConnection.execute` and through
`services.infra.db.fast` (the same pool, on asyncpg), on an embedded PostgreSQL of its own.

Per statement, sequentially on one held connection (latency, not throughput): `SELECT 1`, the
worker's order read (`order_state`, ~30 columns), the ingest's order insert
(`insert_master_order`, a replay: ON CONFLICT DO NOTHING) and an order's progress as a settled
shard reads it (`orders_progress`, the order holding `--legs` follower legs and its master leg),
alternating the two ways in rounds so drifting load reaches both alike; medians of every round's
median.

    .venv/bin/python -m scripts.statement_cost [--n 400] [--rounds 3] [--legs 500]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.dev.scratch import scratch_postgres
from services.dev.seeding import market_order_row
from services.infra.db.engine import autocommit, make_engine
from services.infra.db.fast import fast_connect
from services.infra.db.repositories.accounts import insert_account
from services.infra.db.repositories.base import Connection
from services.infra.db.repositories.orders import (
    insert_master_order,
    order_state,
    orders_progress,
)
from services.infra.db.repositories.users import create_user


async def _seed(engine: AsyncEngine, legs: int) -> dict[str, Any]:
    master_id, account_id = str(uuid.uuid4()), str(uuid.uuid4())
    order = market_order_row(str(uuid.uuid4()), master_id, account_id, "statement-cost")
    async with engine.begin() as conn:
        await create_user(conn, master_id, f"m-{master_id}@x.test", "h", "master")
        await insert_account(conn, account_id, master_id, "sim", "m", b"x")
        await insert_master_order(conn, order)
        # The order's legs, a third filled, and the master's own (one per account and action).
        await conn.execute(
            text(
                "INSERT INTO legs (id, order_id, master_id, subscription_id, follower_id, "
                "account_id, action, client_order_id, symbol, side, qty, type, time_in_force, "
                "status, settled_at) SELECT gen_random_uuid(), CAST(:o AS uuid), "
                "CAST(:m AS uuid), gen_random_uuid(), gen_random_uuid(), CAST(:a AS uuid), "
                "CASE WHEN g = 0 THEN 'master' ELSE 'copy-' || g END, 'c-' || g, 'AAPL', "
                "'buy', 1, 'market', 'day', CASE WHEN g % 3 = 0 THEN 'filled' ELSE 'accepted' "
                "END, now() FROM generate_series(0, :n) AS g"
            ),
            {"o": order["id"], "m": master_id, "a": account_id, "n": legs},
        )
    return order


async def _median_us(call: Callable[[], Awaitable[Any]], n: int) -> float:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1e6)
    return statistics.median(samples[n // 10 :])


def _calls(
    conn: Connection, order_id: str, replay: dict[str, Any]
) -> dict[str, Callable[[], Awaitable[Any]]]:
    return {
        "SELECT 1": lambda: conn.execute(text("SELECT 1")),
        "order_state": lambda: order_state(conn, order_id),
        "insert_master_order (replay)": lambda: insert_master_order(conn, replay),
        "orders_progress": lambda: orders_progress(conn, [order_id]),
    }


async def measure(url: str, n: int, rounds: int, legs: int) -> dict[str, dict[str, list[float]]]:
    engine = make_engine(url)
    order = await _seed(engine, legs)
    replay = {**order, "id": str(uuid.uuid4())}  # the same client_order_id: inserts nothing
    results: dict[str, dict[str, list[float]]] = {}
    try:
        async with autocommit(engine).connect() as plain, fast_connect(engine) as fast:
            for _ in range(rounds):
                ways: tuple[tuple[str, Connection], ...] = (
                    ("sqlalchemy", plain),
                    ("asyncpg", fast),
                )
                for way, conn in ways:
                    for name, call in _calls(conn, order["id"], replay).items():
                        measured = await _median_us(call, n)
                        results.setdefault(name, {}).setdefault(way, []).append(measured)
    finally:
        await engine.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--legs", type=int, default=500, help="follower legs of the order")
    args = parser.parse_args()
    with scratch_postgres() as url:
        results = asyncio.run(measure(url, args.n, args.rounds, args.legs))
    for name, ways in results.items():
        shown = ", ".join(
            f"{way} {statistics.median(values):.0f} µs ({', '.join(f'{v:.0f}' for v in values)})"
            for way, values in ways.items()
        )
        print(f"{name:30} {shown}")


if __name__ == "__main__":
    main()
