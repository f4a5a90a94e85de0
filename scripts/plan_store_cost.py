"""What storing an order's plan costs in the first batch's transaction, by follower count, with
the plan column compressed (PostgreSQL's default, pglz) and uncompressed (STORAGE EXTERNAL,
migration 0065), on an embedded PostgreSQL of its own with the project's schema.

Each sample inserts a fresh order and times `store_plan` (services/infra/db/repositories/orders.py)
on one held connection (latency); the two storages alternate in rounds so drifting load reaches
both alike; medians of every round's median.

    .venv/bin/python -m scripts.plan_store_cost [--followers 500 2000] [--n 150] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.messages import OrderPlan, PlanContext
from services.dev.scratch import scratch_postgres
from services.dev.seeding import market_order_row
from services.infra.db.engine import make_engine
from services.infra.db.fast import fast_connect
from services.infra.db.repositories.accounts import insert_account
from services.infra.db.repositories.orders import insert_master_order
from services.infra.db.repositories.plans import store_plan
from services.infra.db.repositories.users import create_user

STORAGES = {"compressed (pglz)": "EXTENDED", "uncompressed (EXTERNAL)": "EXTERNAL"}


def _plan(followers: int, shard_size: int = 250) -> str:
    ids = [str(uuid.uuid4()) for _ in range(followers)]
    now = datetime.now(UTC)
    return OrderPlan(
        context=PlanContext(planned_at=now, trading_day=now.date()),
        shards=[ids[i : i + shard_size] for i in range(0, followers, shard_size)],
        targets_version=1,
    ).model_dump_json()


async def _order(engine: AsyncEngine, master_id: str, account_id: str) -> str:
    order_id = str(uuid.uuid4())
    async with engine.begin() as conn:
        await insert_master_order(conn, market_order_row(order_id, master_id, account_id))
    return order_id


async def measure(
    url: str, followers: list[int], n: int, rounds: int
) -> dict[tuple[int, str], list[float]]:
    engine = make_engine(url)
    master_id, account_id = str(uuid.uuid4()), str(uuid.uuid4())
    async with engine.begin() as conn:
        await create_user(conn, master_id, f"m-{master_id}@x.test", "h", "master")
        await insert_account(conn, account_id, master_id, "sim", "m", b"x")
    results: dict[tuple[int, str], list[float]] = {}
    try:
        for _ in range(rounds):
            for count in followers:
                plan = _plan(count)
                for name, storage in STORAGES.items():
                    async with engine.begin() as conn:
                        await conn.execute(
                            text(
                                f"ALTER TABLE master_orders ALTER COLUMN plan SET STORAGE {storage}"
                            )
                        )
                    samples = []
                    for _ in range(n):
                        order_id = await _order(engine, master_id, account_id)
                        async with fast_connect(engine) as fast:
                            started = time.perf_counter()
                            await store_plan(fast, order_id, plan)
                            samples.append((time.perf_counter() - started) * 1e6)
                    results.setdefault((count, name), []).append(statistics.median(samples))
    finally:
        await engine.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--followers", type=int, nargs="+", default=[500, 2000])
    parser.add_argument("--n", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with scratch_postgres() as url:
        results = asyncio.run(measure(url, args.followers, args.n, args.rounds))
    for (count, name), values in results.items():
        shown = ", ".join(f"{v:.0f}" for v in values)
        print(f"N = {count:5}  {name:24} {statistics.median(values):6.0f} µs ({shown})")


if __name__ == "__main__":
    main()
