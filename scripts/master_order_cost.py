"""What the worker's database work for an order without followers costs: recording the
master's own leg with the order's plan (`Recorder.record`, one batch that completes shard 0)
and settling its fill (`settling_connection` + `settle_legs`), as `ShardRunner` does, on an
embedded PostgreSQL of its own. Per order: wall µs (sequential round trips: latency) and this
process's CPU µs; medians of each round's median, rounds of `--n` fresh orders.

    .venv/bin/python -m scripts.master_order_cost [--n 300] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncEngine

from replication.model import MasterContext
from replication.state import LegStatus
from schemas.messages import OrderPlan, PlanContext
from services.app.order_messages import order_message_from_row
from services.app.recording import Recorder
from services.app.settling import settling_connection
from services.app.snapshots import Snapshot
from services.dev.scratch import scratch_postgres
from services.dev.seeding import market_order_row
from services.infra.db.engine import make_engine
from services.infra.db.repositories.accounts import SealedAccount, insert_account
from services.infra.db.repositories.legs import LegOutcome, settle_legs
from services.infra.db.repositories.orders import insert_master_order, order_state
from services.infra.db.repositories.users import create_user


async def _orders(engine: AsyncEngine, n: int) -> tuple[SealedAccount, list[str]]:
    master_id, account_id = str(uuid.uuid4()), str(uuid.uuid4())
    ids = [str(uuid.uuid4()) for _ in range(n)]
    async with engine.begin() as conn:
        await create_user(conn, master_id, f"m-{master_id}@x.test", "h", "master")
        await insert_account(conn, account_id, master_id, "sim", "m", b"x")
        for i, order_id in enumerate(ids):
            await insert_master_order(
                conn, market_order_row(order_id, master_id, account_id, f"cost-{i}")
            )
    return SealedAccount(uuid.UUID(account_id), "sim", b"x"), ids


async def _round(engine: AsyncEngine, n: int) -> tuple[float, float]:
    master, ids = await _orders(engine, n)
    recorder = Recorder(engine, lease_s=10)
    now = datetime.now(UTC)
    context = PlanContext(planned_at=now, trading_day=now.date(), master_position=Decimal(0))
    plan_json = OrderPlan(context=context, shards=[[]]).model_dump_json()
    snapshot = Snapshot(context=MasterContext())
    wall, cpu = [], []
    for order_id in ids:
        async with engine.connect() as conn:
            state = await order_state(conn, order_id)
        assert state is not None
        order = order_message_from_row(state.order)
        started, started_cpu = time.perf_counter(), time.process_time()
        (leg,) = await recorder.record(order, [], snapshot, context, master, (0, 1), plan_json)
        filled = [LegOutcome(leg.leg_id, LegStatus.FILLED, filled_qty=order.qty)]
        async with settling_connection(engine, filled) as conn:
            await settle_legs(conn, filled)
        wall.append((time.perf_counter() - started) * 1e6)
        cpu.append((time.process_time() - started_cpu) * 1e6)
    return statistics.median(wall[n // 10 :]), statistics.median(cpu[n // 10 :])


async def measure(url: str, n: int, rounds: int) -> tuple[float, float]:
    engine = make_engine(url)
    try:
        await _round(engine, 50)  # the pool's connections and their prepared statements
        results = [await _round(engine, n) for _ in range(rounds)]
    finally:
        await engine.dispose()
    return (
        statistics.median(wall for wall, _ in results),
        statistics.median(cpu for _, cpu in results),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with scratch_postgres() as url:
        wall, cpu = asyncio.run(measure(url, args.n, args.rounds))
    print(f"record + settle, an order without followers: {wall:.0f} µs wall, {cpu:.0f} µs CPU")


if __name__ == "__main__":
    main()
