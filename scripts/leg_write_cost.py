"""What PostgreSQL itself spends per leg to record and settle a batch: the CPU of the server
process serving the connection (/proc/<pg_backend_pid()>/stat), per leg, for `insert_legs`
of a batch of `--batch` legs in one transaction and `settle_legs` of the same legs (filled),
as the worker does, on an embedded PostgreSQL of its own. With `--compare-drop INDEX` the
rounds alternate between the schema as migrated and the schema without that index (dropped
and created again between rounds), so drifting load reaches both alike.

    .venv/bin/python -m scripts.leg_write_cost [--batch 250] [--rounds 6] \
        [--compare-drop legs_order_idx]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import uuid
from decimal import Decimal
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from replication.model import PlannedLeg
from replication.state import LegStatus
from schemas.common import OrderType, Side, TimeInForce
from services.dev.scratch import scratch_postgres
from services.dev.seeding import market_order_row
from services.infra.db.engine import make_engine
from services.infra.db.fast import FastConnection, fast_begin, fast_connect
from services.infra.db.repositories.accounts import insert_account
from services.infra.db.repositories.legs import LegOutcome, insert_legs, settle_legs
from services.infra.db.repositories.orders import insert_master_order
from services.infra.db.repositories.users import create_user


def _server_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _seed(engine: AsyncEngine, batch: int) -> tuple[str, str, list[tuple[str, str]]]:
    master_id, master_account = str(uuid.uuid4()), str(uuid.uuid4())
    followers = [(str(uuid.uuid4()), str(uuid.uuid4())) for _ in range(batch)]
    async with engine.begin() as conn:
        await create_user(conn, master_id, f"m-{master_id}@x.test", "h", "master")
        await insert_account(conn, master_account, master_id, "sim", "m", b"x")
        for user_id, account_id in followers:
            await create_user(conn, user_id, f"f-{user_id}@x.test", "h", "follower")
            await insert_account(conn, account_id, user_id, "sim", "f", b"x")
    return master_id, master_account, followers


def _legs(order_id: str, followers: list[tuple[str, str]]) -> list[PlannedLeg]:
    return [
        PlannedLeg(
            leg_id=str(uuid.uuid4()),
            order_id=order_id,
            subscription_id=str(uuid.uuid4()),
            follower_id=user_id,
            account_id=account_id,
            broker="sim",
            action="open",
            client_order_id=uuid.uuid4().hex[:20],
            symbol="AAPL",
            side=Side.BUY,
            qty=Decimal(1),
            type=OrderType.MARKET,
            time_in_force=TimeInForce.DAY,
            limit_price=None,
            stop_price=None,
            status=LegStatus.SUBMITTING,
        )
        for user_id, account_id in followers
    ]


async def _one_order(engine: AsyncEngine, seeded: tuple[str, str, list[tuple[str, str]]]) -> int:
    """One order's batch recorded, then settled (filled); returns its legs."""
    master_id, master_account, followers = seeded
    order_id = str(uuid.uuid4())
    async with fast_connect(engine) as conn:
        await insert_master_order(
            conn, market_order_row(order_id, master_id, master_account, order_id)
        )
    legs = _legs(order_id, followers)
    async with fast_begin(engine) as conn:
        await insert_legs(conn, master_id, legs, 30)
    filled = [LegOutcome(leg.leg_id, LegStatus.FILLED, filled_qty=Decimal(1)) for leg in legs]
    async with fast_connect(engine) as conn:
        await settle_legs(conn, filled)
    return len(legs)


async def _per_leg_us(
    engine: AsyncEngine, seeded: tuple[str, str, list[tuple[str, str]]], backend: int, n: int
) -> float:
    """The server's CPU µs per leg over n orders (its clock ticks are 10 ms: one order of 250
    legs is too short to read alone)."""
    started, legs = _server_cpu_s(backend), 0
    for _ in range(n):
        legs += await _one_order(engine, seeded)
    return (_server_cpu_s(backend) - started) / legs * 1e6


async def _backend(conn: FastConnection) -> int:
    return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def measure(url: str, batch: int, rounds: int, drop: str | None) -> dict[str, list[float]]:
    # One connection: every statement runs in the same server process, whose CPU is read.
    engine = make_engine(url, pool_size=1, max_overflow=0)
    results: dict[str, list[float]] = {}
    try:
        seeded = await _seed(engine, batch)
        async with fast_connect(engine) as conn:
            backend = await _backend(conn)
            definition = ""
            if drop is not None:
                definition = (
                    await conn.execute(
                        text("SELECT indexdef FROM pg_indexes WHERE indexname = :i"), {"i": drop}
                    )
                ).scalar_one()
        await _per_leg_us(engine, seeded, backend, 5)  # warm: plans cached, pages in
        for round_ in range(rounds):
            without = drop is not None and round_ % 2 == 1
            if drop is not None:
                async with fast_connect(engine) as conn:
                    if without:
                        await conn.execute(text(f'DROP INDEX "{drop}"'))
                    else:
                        await conn.execute(
                            text(definition.replace("INDEX", "INDEX IF NOT EXISTS", 1))
                        )
            name = f"without {drop}" if without else "as migrated"
            results.setdefault(name, []).append(await _per_leg_us(engine, seeded, backend, 40))
    finally:
        await engine.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--compare-drop", default=None, help="an index to compare without")
    args = parser.parse_args()
    with scratch_postgres() as url:
        results = asyncio.run(measure(url, args.batch, args.rounds, args.compare_drop))
    for name, values in results.items():
        shown = ", ".join(f"{v:.0f}" for v in values)
        print(
            f"PostgreSQL CPU per leg, record + settle ({name}): "
            f"{statistics.median(values):.0f} µs ({shown})"
        )


if __name__ == "__main__":
    main()
