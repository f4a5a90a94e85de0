"""Shared plumbing of the repositories: typed rows built by position, and the unique-constraint
error. Every repository returns frozen row types (dataclasses), never ORM objects or dicts."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import fields
from functools import lru_cache
from typing import Any, Protocol, TypeVar

from sqlalchemy import TextClause
from sqlalchemy import text as _text

Row = dict[str, Any]


@lru_cache(maxsize=1024)
def text(sql: str) -> TextClause:
    """`sqlalchemy.text`, built once per statement: parsing a statement's bind parameters costs
    ~100 µs for the fan-out's long ones, paid per batch when built per call."""
    return _text(sql)


class Result(Protocol):
    """What repositories read of a statement's result (SQLAlchemy's, or FastResult's)."""

    def __iter__(self) -> Iterator[Any]: ...
    def keys(self) -> Any: ...
    def all(self) -> Sequence[Any]: ...
    def first(self) -> Any: ...
    def scalar(self) -> Any: ...
    def scalar_one(self) -> Any: ...
    def scalar_one_or_none(self) -> Any: ...
    def mappings(self) -> Any: ...
    @property
    def rowcount(self) -> int: ...


class Connection(Protocol):
    """What a repository needs of a connection: SQLAlchemy's `AsyncConnection`, or on the hot
    paths `services.infra.db.fast.FastConnection` (the same statements, run on asyncpg)."""

    async def execute(
        self, statement: TextClause, parameters: Mapping[str, Any] | None = None, /
    ) -> Result: ...


class Conflict(Exception):
    """A unique constraint said no; `constraint` names which."""

    def __init__(self, constraint: str) -> None:
        super().__init__(constraint)
        self.constraint = constraint


def fetch_all(result: Any) -> list[Row]:
    # Plain tuples zipped with the keys once: SQLAlchemy's per-row mapping views cost more
    # than the query on the fan-out's hot path.
    keys = tuple(result.keys())
    return [dict(zip(keys, row, strict=True)) for row in result.all()]


def fetch_one(result: Any) -> Row | None:
    row = result.mappings().first()
    return None if row is None else dict(row)


T = TypeVar("T")


def columns(kind: type[Any], table: str = "") -> str:
    """The SELECT/RETURNING list of a row type: its fields, in order (rows are built by
    position, so the type is the one place a row's shape is written)."""
    prefix = f"{table}." if table else ""
    return ", ".join(prefix + f.name for f in fields(kind))


def fetch_all_as(result: Any, kind: Callable[..., T]) -> list[T]:
    return [kind(*row) for row in result.all()]


def fetch_one_as(result: Any, kind: Callable[..., T]) -> T | None:
    row = result.first()
    return None if row is None else kind(*row)
