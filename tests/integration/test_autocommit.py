"""The ingest path's single statements run in autocommit: one round trip each, durable on return."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.infra.db.engine import autocommit


async def _in_transaction(conn: object) -> bool:
    raw = await conn.get_raw_connection()  # type: ignore[attr-defined]
    return bool(raw.driver_connection.is_in_transaction())


async def test_a_plain_connection_opens_a_transaction_and_autocommit_does_not(
    engine: AsyncEngine,
) -> None:
    """The reason for autocommit: asyncpg under SQLAlchemy sends BEGIN before the first
    statement (and COMMIT or ROLLBACK after the last), three round trips for one SELECT."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
        assert await _in_transaction(conn)
    async with autocommit(engine).connect() as conn:
        await conn.execute(text("SELECT 1"))
        assert not await _in_transaction(conn)


async def test_an_autocommit_insert_is_committed_when_it_returns(engine: AsyncEngine) -> None:
    table = f"autocommit_probe_{uuid.uuid4().hex[:8]}"
    async with engine.begin() as conn:
        await conn.execute(text(f"CREATE TABLE {table} (id int PRIMARY KEY)"))
    try:
        async with autocommit(engine).connect() as writer:
            await writer.execute(text(f"INSERT INTO {table} VALUES (1)"))
            # Still inside the writer's block (no commit called): another session sees it.
            async with engine.connect() as reader:
                seen = (await reader.execute(text(f"SELECT count(*) FROM {table}"))).scalar()
            assert seen == 1
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP TABLE {table}"))
