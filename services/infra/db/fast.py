"""The hot statements, run on the pooled asyncpg connection itself.

SQLAlchemy's statement layer costs more than the statement on the paths that run per order
(`python -m scripts.statement_cost`; the README's "Statements on asyncpg" has the numbers).
`fast_connect`/`fast_begin` check a connection out of the same SQLAlchemy pool (the same URL,
limits, recycling and codecs: JSON comes back decoded) and hand the repositories a
`FastConnection` whose `execute` takes the same `text()` statements and parameters: SQLAlchemy
still compiles each statement (once: `:name` → `$n`, casts and quoting as it would send them),
asyncpg prepares it once per connection and runs it.

A transaction is asyncpg's own (`fast_begin`). A connection that comes back still inside a
transaction (cancelled mid-rollback) or closed is invalidated, never returned to the pool, and a
connection-level failure disposes of the pool's idle connections (what SQLAlchemy does on a
disconnect: after a PostgreSQL restart the next checkout opens a fresh connection).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any
from weakref import WeakKeyDictionary

import asyncpg
from asyncpg.prepared_stmt import PreparedStatement
from sqlalchemy import TextClause
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.infra.availability import dependency_unavailable
from services.infra.db.engine import autocommit

_DIALECT = PGDialect_asyncpg()  # type: ignore[no-untyped-call]
_PREPARED_PER_CONNECTION = 256
_prepared: WeakKeyDictionary[Any, OrderedDict[str, PreparedStatement]] = WeakKeyDictionary()


@lru_cache(maxsize=1024)
def positional(statement: TextClause) -> tuple[str, tuple[str, ...]]:
    """The statement as SQLAlchemy sends it to asyncpg ($1, $2, …) and the parameter names in
    that order (a name used twice is one parameter)."""
    compiled = statement.compile(dialect=_DIALECT)
    return compiled.string, tuple(compiled.positiontup or ())


class FastResult:
    """The part of SQLAlchemy's result the repositories use, over asyncpg records."""

    def __init__(self, keys: tuple[str, ...], records: list[asyncpg.Record], status: str) -> None:
        self._keys = keys
        self._records = records
        self._status = status

    def __iter__(self) -> Iterator[asyncpg.Record]:
        return iter(self._records)

    def keys(self) -> tuple[str, ...]:
        return self._keys

    def all(self) -> list[asyncpg.Record]:
        return self._records

    def first(self) -> asyncpg.Record | None:
        return self._records[0] if self._records else None

    def scalar(self) -> Any:
        first = self.first()
        return None if first is None else first[0]

    def scalar_one(self) -> Any:
        if len(self._records) != 1:
            raise LookupError(f"expected one row, got {len(self._records)}")
        return self._records[0][0]

    def scalar_one_or_none(self) -> Any:
        if len(self._records) > 1:
            raise LookupError(f"expected at most one row, got {len(self._records)}")
        return self.scalar()

    def mappings(self) -> _Mappings:
        return _Mappings(self._records)

    @property
    def rowcount(self) -> int:
        """Rows a statement touched, from PostgreSQL's command tag ("UPDATE 3")."""
        last = self._status.rsplit(" ", 1)[-1]
        return int(last) if last.isdigit() else len(self._records)


class _Mappings:
    def __init__(self, records: list[asyncpg.Record]) -> None:
        self._records = records

    def first(self) -> dict[str, Any] | None:
        return dict(self._records[0]) if self._records else None

    def all(self) -> list[dict[str, Any]]:
        return [dict(record) for record in self._records]


class FastConnection:
    """`execute(text(...), {...})` on asyncpg; what repositories take as their `Connection`."""

    def __init__(self, driver: asyncpg.Connection) -> None:
        self.driver = driver

    async def execute(
        self,
        statement: TextClause,
        parameters: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> FastResult:
        if parameters is not None and not isinstance(parameters, Mapping):
            raise TypeError("FastConnection runs one parameter set per statement")
        sql, names = positional(statement)
        prepared = await self._prepare(sql)
        args = [parameters[name] for name in names] if parameters is not None else []
        try:
            records = await prepared.fetch(*args)
        except asyncpg.InvalidCachedStatementError:
            # The schema changed under a prepared statement (a migration): prepare it again.
            self._statements().pop(sql, None)
            prepared = await self._prepare(sql)
            records = await prepared.fetch(*args)
        keys = tuple(attribute.name for attribute in prepared.get_attributes())
        return FastResult(keys, records, prepared.get_statusmsg() or "")

    def _statements(self) -> OrderedDict[str, PreparedStatement]:
        known = _prepared.get(self.driver)
        if known is None:
            known = _prepared[self.driver] = OrderedDict()
        return known

    async def _prepare(self, sql: str) -> PreparedStatement:
        known = self._statements()
        prepared = known.get(sql)
        if prepared is None:
            prepared = await self.driver.prepare(sql)
            known[sql] = prepared
            if len(known) > _PREPARED_PER_CONNECTION:
                known.popitem(last=False)
        else:
            known.move_to_end(sql)
        return prepared


@lru_cache(maxsize=64)
def _autocommit(engine: AsyncEngine) -> AsyncEngine:
    return autocommit(engine)  # one option view per engine, not one per checkout


@asynccontextmanager
async def fast_connect(engine: AsyncEngine) -> AsyncIterator[FastConnection]:
    """A pooled connection, each statement its own transaction (autocommit)."""
    async with _autocommit(engine).connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None  # a checked-out connection has its driver's connection
        try:
            yield FastConnection(driver)
        except BaseException as exc:
            await _after_failure(engine, conn, driver, exc)
            raise
        if driver.is_in_transaction():  # never hand a connection mid-transaction to the pool
            await conn.invalidate()


@asynccontextmanager
async def fast_begin(engine: AsyncEngine) -> AsyncIterator[FastConnection]:
    """A pooled connection inside one transaction: committed when the block ends, rolled back
    when it raises."""
    async with fast_connect(engine) as fast, fast.driver.transaction():
        yield fast


async def _after_failure(
    engine: AsyncEngine, conn: AsyncConnection, driver: asyncpg.Connection, exc: BaseException
) -> None:
    if driver.is_closed() or driver.is_in_transaction():
        await conn.invalidate()
    if dependency_unavailable(exc):
        await engine.dispose()  # the idle connections are likely dead too
