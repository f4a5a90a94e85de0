"""The hot statements, run on the pooled asyncpg connection itself.

SQLAlchemy's statement layer costs more than the statement on the paths that run per order
(`python -m scripts.statement_cost`; the README's "Statements on asyncpg" has the numbers).
`fast_connect`/`fast_begin` check a connection out of the same SQLAlchemy pool (the same URL,
limits, recycling and codecs: JSON comes back decoded) and hand the repositories a
`FastConnection` whose `execute` takes the same `text()` statements and parameters: SQLAlchemy
still compiles each statement (once: `:name` → `$n`, casts and quoting as it would send them),
asyncpg prepares it once per connection and runs it.

`fast_begin` sends BEGIN/COMMIT/ROLLBACK itself. A connection that comes back closed, inside a
transaction, or through a cancellation is invalidated, never returned to the pool, and a lost
connection disposes of the pool's idle ones (what SQLAlchemy does on a disconnect: after a
PostgreSQL restart the next checkout opens a fresh connection). Prepared statements are kept in
the pool record's `info`, which SQLAlchemy clears when it replaces the connection.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

import asyncpg
from asyncpg.prepared_stmt import PreparedStatement
from sqlalchemy import TextClause
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.infra.db.engine import autocommit

_DIALECT = PGDialect_asyncpg()  # type: ignore[no-untyped-call]
_PREPARED_PER_CONNECTION = 256
_PREPARED_KEY = "copytrade.prepared"  # in the pool record's info: cleared with its connection


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

    def __init__(
        self, driver: asyncpg.Connection, prepared: OrderedDict[str, PreparedStatement]
    ) -> None:
        self.driver = driver
        self._prepared = prepared  # this connection's statements, most recently used last

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
            # The schema changed under a prepared statement (a migration): prepare it again,
            # unless a transaction is open (the error has aborted it: the caller must retry).
            self._prepared.pop(sql, None)
            if self.driver.is_in_transaction():
                raise
            prepared = await self._prepare(sql)
            records = await prepared.fetch(*args)
        keys = tuple(attribute.name for attribute in prepared.get_attributes())
        return FastResult(keys, records, prepared.get_statusmsg() or "")

    async def _prepare(self, sql: str) -> PreparedStatement:
        known = self._prepared
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
        prepared = conn.info.setdefault(_PREPARED_KEY, OrderedDict())
        try:
            yield FastConnection(driver, prepared)
        except BaseException as exc:
            await _after_failure(engine, conn, driver, exc)
            raise
        if driver.is_in_transaction():  # never hand a connection mid-transaction to the pool
            await conn.invalidate()


@asynccontextmanager
async def fast_begin(engine: AsyncEngine) -> AsyncIterator[FastConnection]:
    """A pooled connection inside one transaction: committed when the block ends, rolled back
    when it raises. BEGIN, COMMIT and ROLLBACK are sent as plain statements (not asyncpg's
    Transaction, which counts itself started before BEGIN is answered): a failure or a
    cancellation while one is in flight ends in fast_connect's invalidation."""
    async with fast_connect(engine) as fast:
        await fast.driver.execute("BEGIN")
        try:
            yield fast
        except BaseException:
            await fast.driver.execute("ROLLBACK")
            raise
        await fast.driver.execute("COMMIT")


async def _after_failure(
    engine: AsyncEngine, conn: AsyncConnection, driver: asyncpg.Connection, exc: BaseException
) -> None:
    """A cancellation (or any BaseException that is not an Exception) may have left a statement
    or a BEGIN half-answered; a closed connection or an open transaction is no use to the next
    caller: none of them goes back to the pool. A lost connection means PostgreSQL went away:
    the pool's idle connections go too (SQLAlchemy does the same on a disconnect)."""
    lost = driver.is_closed()
    if lost or not isinstance(exc, Exception) or driver.is_in_transaction():
        await conn.invalidate()
    if lost:
        await engine.dispose()
