"""History pages: a follower's copies and a master's orders, newest first, by keyset
((created_at, id) strictly below the last row of the previous page), within [since, until)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from services.infra.db.repositories.base import Connection, Row, columns, fetch_all_as, text
from services.infra.db.repositories.legs import Leg
from services.infra.db.repositories.orders import MasterOrder

_LEG_COLUMNS = columns(Leg)
_ORDER_COLUMNS = columns(MasterOrder)


@dataclass(frozen=True, slots=True)
class PageKey:
    """Where a page ends: the (created_at, id) of its last row."""

    created_at: datetime
    id: UUID


@dataclass(frozen=True, slots=True)
class Window:
    since: datetime | None = None
    until: datetime | None = None
    after: PageKey | None = None
    limit: int = 100


def _clauses(window: Window, params: Row) -> str:
    """The window's WHERE additions; fills `params`. Asks for one row more than the limit, so
    the caller knows whether another page exists."""
    sql = ""
    if window.since is not None:
        sql += " AND created_at >= :since"
        params["since"] = window.since
    if window.until is not None:
        sql += " AND created_at < :until"
        params["until"] = window.until
    if window.after is not None:
        sql += " AND (created_at, id) < (:after_t, CAST(:after_id AS uuid))"
        params["after_t"] = window.after.created_at
        params["after_id"] = str(window.after.id)
    params["limit"] = window.limit + 1
    return sql + " ORDER BY created_at DESC, id DESC LIMIT :limit"


async def copies_page(
    conn: Connection, follower_id: str, order_id: str | None, window: Window
) -> list[Leg]:
    """Up to limit + 1 of the follower's copies (legs other than the master's own)."""
    params: Row = {"f": follower_id}
    sql = f"SELECT {_LEG_COLUMNS} FROM legs WHERE follower_id = :f AND action <> 'master'"
    if order_id is not None:
        sql += " AND order_id = :o"
        params["o"] = order_id
    sql += _clauses(window, params)
    return fetch_all_as(await conn.execute(text(sql), params), Leg)


async def orders_page(conn: Connection, master_id: str, window: Window) -> list[MasterOrder]:
    """Up to limit + 1 of the master's orders."""
    params: Row = {"m": master_id}
    sql = f"SELECT {_ORDER_COLUMNS} FROM master_orders WHERE master_id = :m"
    sql += _clauses(window, params)
    return fetch_all_as(await conn.execute(text(sql), params), MasterOrder)
