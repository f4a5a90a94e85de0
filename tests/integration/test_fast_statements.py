"""services.infra.db.fast: the hot statements on asyncpg, out of SQLAlchemy's pool. The same
statements give the same rows as through SQLAlchemy; autocommit is durable on return; a
transaction is all or nothing; a connection is never pooled inside a transaction."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.infra.db.engine import make_engine
from services.infra.db.fast import fast_begin, fast_connect, positional
from services.infra.db.repositories.orders import order_state
from services.infra.db.repositories.subscriptions import load_targets
from tests.integration.test_repositories import _order_with_followers


@pytest.fixture
async def table(engine: AsyncEngine) -> AsyncIterator[str]:
    name = f"fast_probe_{uuid.uuid4().hex[:8]}"
    async with engine.begin() as conn:
        await conn.execute(text(f"CREATE TABLE {name} (id int PRIMARY KEY, note text)"))
    try:
        yield name
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP TABLE {name}"))


async def _count(engine: AsyncEngine, table: str) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())


def test_statements_are_sent_as_sqlalchemy_would_send_them() -> None:
    sql, names = positional(
        text("SELECT :a, CAST(:b AS uuid), x::int, :a, '12:30' FROM t WHERE y = ANY(:ids)")
    )
    assert sql == "SELECT $1, CAST($2 AS uuid), x::int, $1, '12:30' FROM t WHERE y = ANY($3)"
    assert names == ("a", "b", "ids")


async def test_the_same_rows_as_through_sqlalchemy(engine: AsyncEngine) -> None:
    order, _ = await _order_with_followers(engine, 3)
    async with engine.connect() as conn:
        slow_state = await order_state(conn, order.order_id)
        slow_targets = await load_targets(conn, order.master_id)
    async with fast_connect(engine) as conn:
        fast_state = await order_state(conn, order.order_id)
        fast_targets = await load_targets(conn, order.master_id)
    assert fast_state is not None and fast_state == slow_state
    assert fast_targets == slow_targets
    async with fast_connect(engine) as conn:
        assert await order_state(conn, str(uuid.uuid4())) is None


async def test_autocommit_is_durable_when_the_statement_returns(
    engine: AsyncEngine, table: str
) -> None:
    async with fast_connect(engine) as conn:
        inserted = await conn.execute(text(f"INSERT INTO {table} VALUES (1, 'a'), (2, 'b')"))
        assert inserted.rowcount == 2
        assert not conn.driver.is_in_transaction()
        assert await _count(engine, table) == 2  # another session sees it, the block still open
        updated = await conn.execute(text(f"UPDATE {table} SET note = :n WHERE id = 1"), {"n": "z"})
        assert updated.rowcount == 1
        rows = await conn.execute(text(f"SELECT id, note FROM {table} ORDER BY id"))
        assert rows.keys() == ("id", "note")
        assert [tuple(r) for r in rows.all()] == [(1, "z"), (2, "b")]
        assert rows.mappings().first() == {"id": 1, "note": "z"}
        empty = await conn.execute(text(f"SELECT id FROM {table} WHERE id > 10"))
        assert empty.first() is None and empty.scalar_one_or_none() is None
        assert empty.keys() == ("id",)


async def test_a_transaction_is_all_or_nothing(engine: AsyncEngine, table: str) -> None:
    with pytest.raises(RuntimeError):
        async with fast_begin(engine) as conn:
            await conn.execute(text(f"INSERT INTO {table} VALUES (1, 'a')"))
            assert await _count(engine, table) == 0  # not visible before the commit
            raise RuntimeError("after the first statement")
    assert await _count(engine, table) == 0
    async with fast_begin(engine) as conn:
        await conn.execute(text(f"INSERT INTO {table} VALUES (1, 'a')"))
        await conn.execute(text(f"INSERT INTO {table} VALUES (2, 'b')"))
    assert await _count(engine, table) == 2


async def test_a_cancelled_transaction_never_goes_back_to_the_pool_open(
    servers: dict[str, str], table: str
) -> None:
    """One pooled connection: a transaction cancelled mid-statement must not leave the next
    user of the pool inside it (its INSERT would never commit)."""
    engine = make_engine(servers["database"], pool_size=1, max_overflow=0)
    try:

        async def stuck() -> None:
            async with fast_begin(engine) as conn:
                await conn.execute(text(f"INSERT INTO {table} VALUES (7, 'lost')"))
                await conn.execute(text("SELECT pg_sleep(5)"))

        # Cancelled mid-statement, and at whatever await it reached after 0-3 ms: waiting for
        # the pool, for BEGIN's answer, mid-INSERT.
        for delay in (0.2, 0.0, 0.0005, 0.001, 0.002, 0.003):
            task = asyncio.create_task(stuck())
            await asyncio.sleep(delay)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            async with fast_connect(engine) as conn:
                assert not conn.driver.is_in_transaction()
                await conn.execute(
                    text(f"INSERT INTO {table} VALUES (8, 'kept') ON CONFLICT DO NOTHING")
                )
            assert await _count(engine, table) == 1  # 8 committed, 7 rolled back
    finally:
        await engine.dispose()


async def test_a_schema_change_under_a_prepared_statement_is_survived(
    engine: AsyncEngine, table: str
) -> None:
    async with fast_connect(engine) as conn:
        await conn.execute(text(f"INSERT INTO {table} VALUES (1, 'a')"))
        read = text(f"SELECT * FROM {table}")
        assert len((await conn.execute(read)).keys()) == 2
        await conn.execute(text(f"ALTER TABLE {table} ADD COLUMN extra int"))
        assert len((await conn.execute(read)).keys()) == 3
