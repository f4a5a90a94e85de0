"""Shared plumbing of the repositories: row conversion and the unique-constraint error."""

from __future__ import annotations

from typing import Any

Row = dict[str, Any]


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
