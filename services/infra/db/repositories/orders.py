"""Master orders: ingest (idempotent by client order id), outbox, plan, progress, cancels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from replication.progress import fanout_ms, progress_status
from replication.state import (
    OPEN,
    OPEN_AT_BROKER,
)
from services.infra.db.repositories.accounts import SealedAccount
from services.infra.db.repositories.base import (
    Connection,
    Row,
    columns,
    fetch_all,
    fetch_all_as,
    fetch_one,
    fetch_one_as,
    text,
)


@dataclass(frozen=True, slots=True)
class MasterOrder:
    id: UUID
    master_id: UUID
    account_id: UUID
    client_order_id: str
    request_hash: str
    symbol: str
    side: str
    qty: Decimal
    type: str
    limit_price: Decimal | None
    stop_price: Decimal | None
    time_in_force: str
    status: str
    created_at: datetime
    published_at: datetime | None
    planned_at: datetime | None
    origin: str
    broker_client_order_id: str | None
    version: int
    broker_order_id: str | None  # origin 'broker': the order carrying it now (moves on replace)
    broker_open: bool  # origin 'broker': still open at the broker, so the poller follows it
    dead_lettered_at: datetime | None  # its message ran out of delivery attempts


@dataclass(frozen=True, slots=True)
class MasterExecution:
    """The master's own leg of an order placed through the API."""

    status: str
    reason: str | None
    broker_order_id: str | None
    filled_qty: Decimal | None
    filled_avg_price: Decimal | None


@dataclass(frozen=True, slots=True)
class OrderProgress:
    """An order's fan-out: follower legs by status, the rule of replication.progress."""

    status: str
    total: int
    by_status: dict[str, int]
    fanout_ms: float | None
    master: MasterExecution | None
    cancel_requested: bool


_ORDER_COLUMNS = columns(MasterOrder)


async def insert_master_order(conn: Connection, values: Row) -> MasterOrder | None:
    """Insert unless (master, client_order_id) exists or the account is not the master's; None
    means one of the two (the caller tells which on that rare path). One round trip."""
    return fetch_one_as(
        await conn.execute(
            text(
                "INSERT INTO master_orders (id, master_id, account_id, client_order_id, "
                "request_hash, symbol, side, qty, type, limit_price, stop_price, time_in_force) "
                "SELECT :id, :master_id, :account_id, :client_order_id, :request_hash, :symbol, "
                ":side, :qty, :type, :limit_price, :stop_price, :time_in_force "
                "WHERE EXISTS (SELECT 1 FROM accounts WHERE id = CAST(:account_id AS uuid) "
                "AND user_id = CAST(:master_id AS uuid) AND deleted_at IS NULL "
                "AND deleting_at IS NULL) "
                f"ON CONFLICT (master_id, client_order_id) DO NOTHING RETURNING {_ORDER_COLUMNS}"
            ),
            values,
        ),
        MasterOrder,
    )


async def get_master_order_by_client_id(
    conn: Connection, master_id: str, client_order_id: str
) -> MasterOrder | None:
    return fetch_one_as(
        await conn.execute(
            text(
                f"SELECT {_ORDER_COLUMNS} FROM master_orders "
                "WHERE master_id = :m AND client_order_id = :c"
            ),
            {"m": master_id, "c": client_order_id},
        ),
        MasterOrder,
    )


async def get_master_order(conn: Connection, order_id: str, master_id: str) -> MasterOrder | None:
    return fetch_one_as(
        await conn.execute(
            text(f"SELECT {_ORDER_COLUMNS} FROM master_orders WHERE id = :id AND master_id = :m"),
            {"id": order_id, "m": master_id},
        ),
        MasterOrder,
    )


async def list_master_orders(conn: Connection, master_id: str, limit: int) -> list[MasterOrder]:
    return fetch_all_as(
        await conn.execute(
            text(
                f"SELECT {_ORDER_COLUMNS} FROM master_orders WHERE master_id = :m "
                "ORDER BY created_at DESC LIMIT :limit"
            ),
            {"m": master_id, "limit": limit},
        ),
        MasterOrder,
    )


async def mark_published(conn: Connection, order_ids: Sequence[str]) -> None:
    await conn.execute(
        text(
            "UPDATE master_orders SET published_at = now() "
            "WHERE id = ANY(CAST(:ids AS uuid[])) AND published_at IS NULL"
        ),
        {"ids": list(order_ids)},
    )


async def unpublished_orders(
    conn: Connection, older_than_s: float, limit: int
) -> list[MasterOrder]:
    return fetch_all_as(
        await conn.execute(
            text(
                f"SELECT {_ORDER_COLUMNS} FROM master_orders WHERE published_at IS NULL "
                "AND created_at < now() - make_interval(secs => :age) "
                "ORDER BY created_at LIMIT :limit"
            ),
            {"age": older_than_s, "limit": limit},
        ),
        MasterOrder,
    )


_ORDER_AS = ", ".join(f"o.{f.name} AS o_{f.name}" for f in fields(MasterOrder))
# A master leg still moving: not final at its broker, so the master's position may change.
# Written into the statement, not bound: only then can the planner of a prepared (generic) plan
# use the partial index legs_master_open_idx, whose predicate is this list; with a bound array it
# scanned every master leg the account ever had (tests/integration/test_query_plans.py).
_MASTER_OPEN = ", ".join(f"'{s}'" for s in sorted(s.value for s in OPEN | OPEN_AT_BROKER))


@dataclass(frozen=True)
class OrderState:
    """What a worker needs to know before planning an order, read in one round trip."""

    plan: Any  # the fixed plan (jsonb), None before the order is first planned
    shards_recorded: set[int]
    # The master has a master leg that is not final: its position may move at any moment, so
    # a cached position must not be used.
    master_busy: bool
    targets_version: int  # bumped by the database on any change to the master's followers
    halts: set[str]
    master_account: SealedAccount | None
    order: MasterOrder  # what is copied comes from this row, never from a message
    copy_on: str = "submitted"  # the master's execution policy (issue 18)


async def order_state(conn: Connection, order_id: str) -> OrderState | None:
    row = fetch_one(
        await conn.execute(
            text(
                "SELECT o.plan, o.shards_recorded, EXISTS (SELECT 1 FROM legs l "
                "WHERE l.account_id = o.account_id AND l.action = 'master' "
                f"AND l.status IN ({_MASTER_OPEN})) AS master_busy, "
                "u.targets_version, u.copy_on, ARRAY(SELECT scope FROM halts) AS halts, "
                f"a.id AS account_id, a.broker, a.credentials, {_ORDER_AS} "
                "FROM master_orders o JOIN users u ON u.id = o.master_id "
                "LEFT JOIN accounts a ON a.id = o.account_id WHERE o.id = :id"
            ),
            {"id": order_id},
        )
    )
    if row is None:
        return None
    sealed = (row["account_id"], row["broker"], row["credentials"])
    account = None if sealed[0] is None else SealedAccount(*sealed)
    return OrderState(
        plan=row["plan"],
        shards_recorded=set(row["shards_recorded"] or []),
        master_busy=bool(row["master_busy"]),
        targets_version=int(row["targets_version"]),
        halts={str(scope) for scope in row["halts"] or []},
        master_account=account,
        copy_on=str(row["copy_on"]),
        order=MasterOrder(*(row[f"o_{f.name}"] for f in fields(MasterOrder))),
    )


async def order_progress(conn: Connection, order_id: str) -> OrderProgress:
    """Follower legs by status, the master's own leg, and the fan-out time once every follower
    leg has settled (master order created → last follower leg settled)."""
    return (await orders_progress(conn, [order_id]))[order_id]


# One round trip per progress read: each order's follower legs counted by status with their
# last settle (one pass over the order's legs on legs_order_idx) and its master leg (one per
# order: UNIQUE (order_id, account_id, action)). As a join, the prepared (generic) plan of the
# last settle hashed a scan of every leg ever recorded; here both are per order subqueries. The
# master leg's LIMIT 1 keeps its subquery per order: without it PostgreSQL may pull it up into a
# join, and one generic plan did, with a scan of every master leg ever recorded.
_PROGRESS = text(
    "SELECT o.id, o.planned_at, o.cancel_requested_at, f.counts, "
    "EXTRACT(EPOCH FROM (f.last_settled - o.created_at)) * 1000 AS fanout_ms, "
    "m.status AS master_status, m.reason AS master_reason, "
    "m.broker_order_id AS master_broker_order_id, m.filled_qty AS master_filled_qty, "
    "m.filled_avg_price AS master_filled_avg_price "
    "FROM master_orders o "
    "CROSS JOIN LATERAL (SELECT json_object_agg(s.status, s.n) AS counts, "
    "max(s.last_settled) AS last_settled FROM (SELECT l.status, count(*) AS n, "
    "max(l.settled_at) AS last_settled FROM legs l WHERE l.order_id = o.id "
    "AND l.action <> 'master' GROUP BY l.status) s) f "
    "LEFT JOIN LATERAL (SELECT l.status, l.reason, l.broker_order_id, l.filled_qty, "
    "l.filled_avg_price FROM legs l WHERE l.order_id = o.id AND l.action = 'master' LIMIT 1) m "
    "ON true "
    "WHERE o.id = ANY(CAST(:ids AS uuid[]))"
)


async def orders_progress(conn: Connection, order_ids: Sequence[str]) -> dict[str, OrderProgress]:
    """order_progress for many orders in one statement; the status rule is
    replication.progress (an id that is no order reads as an unplanned order with no legs)."""
    rows = fetch_all(await conn.execute(_PROGRESS, {"ids": list(order_ids)}))
    found = {str(row["id"]): row for row in rows}
    canonical = {order_id: str(UUID(order_id)) for order_id in order_ids}  # as str(uuid) reads
    return {order_id: _progress(found.get(key)) for order_id, key in canonical.items()}


def _progress(row: Row | None) -> OrderProgress:
    counts = (row["counts"] if row is not None else None) or {}
    by_status = {str(status): int(n) for status, n in counts.items()}
    planned = row is not None and row["planned_at"] is not None
    elapsed = row["fanout_ms"] if row is not None else None
    master = None
    if row is not None and row["master_status"] is not None:
        master = MasterExecution(
            status=row["master_status"],
            reason=row["master_reason"],
            broker_order_id=row["master_broker_order_id"],
            filled_qty=row["master_filled_qty"],
            filled_avg_price=row["master_filled_avg_price"],
        )
    return OrderProgress(
        status=progress_status(planned, by_status).value,
        total=sum(by_status.values()),
        by_status=by_status,
        fanout_ms=fanout_ms(planned, by_status, elapsed),
        master=master,
        cancel_requested=row is not None and row["cancel_requested_at"] is not None,
    )


async def insert_broker_order(conn: Connection, values: Row) -> MasterOrder | None:
    """A master order seen at the broker, keyed by the broker's order id: seen twice, kept once."""
    return fetch_one_as(
        await conn.execute(
            text(
                "INSERT INTO master_orders (id, master_id, account_id, client_order_id, "
                "request_hash, symbol, side, qty, type, limit_price, stop_price, time_in_force, "
                "origin, broker_client_order_id, broker_order_id, broker_open) VALUES (:id, "
                ":master_id, :account_id, :client_order_id, 'broker', :symbol, :side, :qty, "
                ":type, :limit_price, :stop_price, :time_in_force, 'broker', "
                ":broker_client_order_id, :broker_order_id, :broker_open) "
                f"ON CONFLICT (master_id, client_order_id) DO NOTHING RETURNING {_ORDER_COLUMNS}"
            ),
            values,
        ),
        MasterOrder,
    )


async def request_replace(
    conn: Connection,
    order_id: str,
    master_id: str,
    qty: Decimal | None,
    limit_price: Decimal | None,
    stop_price: Decimal | None,
) -> MasterOrder | None:
    return fetch_one_as(
        await conn.execute(
            text(
                "UPDATE master_orders SET qty = COALESCE(:qty, qty), "
                "limit_price = COALESCE(:limit_price, limit_price), "
                "stop_price = COALESCE(:stop_price, stop_price), version = version + 1 "
                "WHERE id = :id AND master_id = :m AND cancel_requested_at IS NULL "
                f"RETURNING {_ORDER_COLUMNS}"
            ),
            {
                "id": order_id,
                "m": master_id,
                "qty": qty,
                "limit_price": limit_price,
                "stop_price": stop_price,
            },
        ),
        MasterOrder,
    )


async def orders_by_ids(conn: Connection, order_ids: Sequence[str]) -> dict[str, MasterOrder]:
    rows = fetch_all_as(
        await conn.execute(
            text(
                f"SELECT {_ORDER_COLUMNS} FROM master_orders WHERE id = ANY(CAST(:ids AS uuid[]))"
            ),
            {"ids": list(order_ids)},
        ),
        MasterOrder,
    )
    return {str(row.id): row for row in rows}


async def request_cancel(conn: Connection, order_id: str, master_id: str) -> Row | None:
    return fetch_one(
        await conn.execute(
            text(
                "UPDATE master_orders SET cancel_requested_at = COALESCE(cancel_requested_at, "
                "now()) WHERE id = :id AND master_id = :m RETURNING id, cancel_requested_at"
            ),
            {"id": order_id, "m": master_id},
        )
    )
