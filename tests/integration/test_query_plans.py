"""Hot statements reach `legs` through an index condition even when prepared (a generic plan,
which asyncpg's prepared statements get after their first executions), so they cost the same on
the first day and after a year of legs. Two did not: the order read's open-master-leg check
(its status list was a bound array, which no plan can match to the partial index's predicate)
and the order progress's last-settle time (a join whose generic plan hashed every leg)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncEngine

from replication.state import LegStatus
from services.dev.seeding import market_order_row
from services.infra.db.fast import FastResult, positional
from services.infra.db.repositories.accounts import insert_account
from services.infra.db.repositories.legs import LegOutcome, settle_legs
from services.infra.db.repositories.orders import (
    insert_master_order,
    order_state,
    orders_progress,
)
from services.infra.db.repositories.users import create_user


class _Capture:
    """A connection that only records the statements a repository function sends."""

    def __init__(self) -> None:
        self.sent: list[tuple[TextClause, Mapping[str, Any]]] = []

    async def execute(
        self, statement: TextClause, parameters: Mapping[str, Any] | None = None, /
    ) -> FastResult:
        self.sent.append((statement, parameters or {}))
        return FastResult((), [], "SELECT 0")


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, list):
        return "ARRAY[" + ", ".join(_literal(v) for v in value) + "]"
    return "'" + str(value).replace("'", "''") + "'"


async def _seed_legs(conn: Any, orders: int = 40, legs_per_order: int = 60) -> None:
    """A history of filled legs spread over many orders (in the caller's transaction, rolled
    back with it), with fresh statistics: the planner then prices scans as it would live."""
    for _ in range(orders):
        user_id, account_id, order_id = (str(uuid.uuid4()) for _ in range(3))
        await create_user(conn, user_id, f"plans-{user_id}@x.test", "h", "master")
        await insert_account(conn, account_id, user_id, "sim", "a", b"x")
        await insert_master_order(conn, market_order_row(order_id, user_id, account_id))
        await conn.execute(
            text(
                "INSERT INTO legs (id, order_id, master_id, subscription_id, follower_id, "
                "account_id, action, client_order_id, symbol, side, qty, type, time_in_force, "
                "status, settled_at) SELECT gen_random_uuid(), CAST(:o AS uuid), "
                "CAST(:u AS uuid), gen_random_uuid(), gen_random_uuid(), CAST(:a AS uuid), "
                "'copy-' || g, 'c-' || g || '-' || :o, 'AAPL', 'buy', 1, 'market', 'day', "
                "'filled', now() FROM generate_series(1, :n) AS g"
            ),
            {"o": order_id, "u": user_id, "a": account_id, "n": legs_per_order},
        )
    await conn.execute(text("ANALYZE legs"))
    await conn.execute(text("ANALYZE master_orders"))


async def _generic_plans(engine: AsyncEngine, sent: list[tuple[TextClause, Any]]) -> list[Any]:
    plans = []
    async with engine.begin() as conn:
        await _seed_legs(conn)
        # One plan for every parameter value, as a prepared statement gets after a few runs.
        await conn.execute(text("SET LOCAL plan_cache_mode = force_generic_plan"))
        for statement, parameters in sent:
            sql, names = positional(statement)
            await conn.execute(text(f"PREPARE probe AS {sql}"))
            types = (
                await conn.execute(
                    text(
                        "SELECT parameter_types::text[] FROM pg_prepared_statements "
                        "WHERE name = 'probe'"
                    )
                )
            ).scalar_one()
            args = ", ".join(
                f"{_literal(parameters[name])}::{kind}"
                for name, kind in zip(names, types, strict=True)
            )
            explained = await conn.execute(text(f"EXPLAIN (FORMAT JSON) EXECUTE probe({args})"))
            document = explained.scalar_one()
            plans.append((json.loads(document) if isinstance(document, str) else document)[0])
            await conn.execute(text("DEALLOCATE probe"))
        await conn.rollback()  # the seeded history and its statistics go
    return plans


def _nodes(node: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


def _unindexed_leg_scans(plan: Mapping[str, Any]) -> list[str]:
    return [
        node["Node Type"]
        for node in _nodes(plan["Plan"])
        if node.get("Relation Name") == "legs"
        and "Scan" in node["Node Type"]
        and not ("Index Cond" in node or "Recheck Cond" in node)
    ]


async def _order_read(conn: Any) -> None:
    await order_state(conn, str(uuid.uuid4()))


async def _progress(conn: Any) -> None:
    await orders_progress(conn, [str(uuid.uuid4()), str(uuid.uuid4())])


async def _settle(conn: Any) -> None:
    outcome = LegOutcome(str(uuid.uuid4()), LegStatus.FILLED, filled_qty=Decimal(1))
    await settle_legs(conn, [outcome])


@pytest.mark.parametrize("call", [_order_read, _progress, _settle], ids=lambda c: c.__name__)
async def test_hot_statements_reach_legs_by_an_index(
    engine: AsyncEngine, call: Callable[[Any], Awaitable[None]]
) -> None:
    capture = _Capture()
    await call(capture)
    assert capture.sent
    # Twice: the first seeding's row counts outlive its rollback (pg_class is updated in place),
    # so the second plans with other statistics, as a busy database's would differ from a quiet
    # one's. One generic plan of the order progress scanned every master leg only the second time.
    for _ in range(2):
        for (statement, _), plan in zip(
            capture.sent, await _generic_plans(engine, capture.sent), strict=True
        ):
            assert not _unindexed_leg_scans(plan), (statement.text, json.dumps(plan, indent=1))


async def test_the_order_read_uses_the_open_master_leg_partial_index(engine: AsyncEngine) -> None:
    capture = _Capture()
    await _order_read(capture)
    (plan,) = await _generic_plans(engine, capture.sent)
    assert any(n.get("Index Name") == "legs_master_open_idx" for n in _nodes(plan["Plan"]))


async def test_the_plan_is_stored_uncompressed(engine: AsyncEngine) -> None:
    """Migration 0065: pglz made storing a 2,000-follower plan (80 KB) cost 2.5 ms of the first
    follower's wait against 0.9 ms uncompressed (`python -m scripts.plan_store_cost`)."""
    async with engine.connect() as conn:
        storage = (
            await conn.execute(
                text(
                    "SELECT attstorage::text FROM pg_attribute "
                    "WHERE attrelid = 'master_orders'::regclass AND attname = 'plan'"
                )
            )
        ).scalar_one()
    assert storage == "e"  # EXTERNAL: out of line, not compressed
