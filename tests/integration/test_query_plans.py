"""Hot statements keep using their partial indexes when prepared (a generic plan), so they cost
the same on the first day and after a year of legs."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.infra.db.fast import FastResult, positional
from services.infra.db.repositories.orders import order_state


class _Capture:
    """A connection that only records the statement a repository function sends."""

    def __init__(self) -> None:
        self.sent: list[TextClause] = []

    async def execute(
        self, statement: TextClause, parameters: Mapping[str, Any] | None = None, /
    ) -> FastResult:
        self.sent.append(statement)
        return FastResult((), [], "SELECT 0")


async def _generic_plan(engine: AsyncEngine, statement: TextClause, *args: str) -> str:
    sql, _ = positional(statement)
    async with engine.connect() as conn:
        # As asyncpg's prepared statements run after their first executions: one plan for
        # every parameter value, so a partial index is usable only if the SQL itself implies
        # its predicate. Sequential scans off: on a small table they would win regardless.
        await conn.execute(text("SET LOCAL plan_cache_mode = force_generic_plan"))
        await conn.execute(text("SET LOCAL enable_seqscan = off"))
        await conn.execute(text(f"PREPARE probe AS {sql}"))
        quoted = ", ".join(f"'{a}'" for a in args)
        plan = (await conn.execute(text(f"EXPLAIN EXECUTE probe({quoted})"))).all()
        await conn.execute(text("DEALLOCATE probe"))
    return "\n".join(str(row[0]) for row in plan)


async def test_the_order_read_finds_open_master_legs_by_their_partial_index(
    engine: AsyncEngine,
) -> None:
    capture = _Capture()
    await order_state(capture, str(uuid.uuid4()))
    plan = await _generic_plan(engine, capture.sent[0], str(uuid.uuid4()))
    assert "legs_master_open_idx" in plan, plan
