"""Repositories: every SQL statement of the service lives here. Callers own the transaction."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from replication.model import PlannedLeg
from replication.state import IN_DOUBT, SETTLED, LegStatus

Row = dict[str, Any]


class Conflict(Exception):
    """A unique constraint said no; `constraint` names which."""

    def __init__(self, constraint: str) -> None:
        super().__init__(constraint)
        self.constraint = constraint


def _rows(result: Any) -> list[Row]:
    return [dict(row) for row in result.mappings().all()]


def _row(result: Any) -> Row | None:
    row = result.mappings().first()
    return None if row is None else dict(row)


# users ------------------------------------------------------------------------------------
async def create_user(
    conn: AsyncConnection, user_id: str, email: str, password_hash: str, role: str
) -> None:
    try:
        async with conn.begin_nested():
            await conn.execute(
                text(
                    "INSERT INTO users (id, email, password_hash, role) "
                    "VALUES (:id, :email, :password_hash, :role)"
                ),
                {"id": user_id, "email": email, "password_hash": password_hash, "role": role},
            )
    except IntegrityError as exc:
        raise Conflict("email_taken") from exc


async def get_user_by_email(conn: AsyncConnection, email: str) -> Row | None:
    return _row(
        await conn.execute(
            text("SELECT id, email, password_hash, role FROM users WHERE email = :email"),
            {"email": email},
        )
    )


async def get_user(conn: AsyncConnection, user_id: str) -> Row | None:
    return _row(
        await conn.execute(
            text("SELECT id, email, role FROM users WHERE id = :id"), {"id": user_id}
        )
    )


# accounts ---------------------------------------------------------------------------------
async def create_account(
    conn: AsyncConnection,
    account_id: str,
    user_id: str,
    broker: str,
    label: str,
    credentials: bytes,
) -> None:
    await conn.execute(
        text(
            "INSERT INTO accounts (id, user_id, broker, label, credentials) "
            "VALUES (:id, :user_id, :broker, :label, :credentials)"
        ),
        {
            "id": account_id,
            "user_id": user_id,
            "broker": broker,
            "label": label,
            "credentials": credentials,
        },
    )


_ACCOUNT_COLUMNS = "id, user_id, broker, label, halted, created_at"


async def list_accounts(conn: AsyncConnection, user_id: str) -> list[Row]:
    return _rows(
        await conn.execute(
            text(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE user_id = :u ORDER BY created_at"),
            {"u": user_id},
        )
    )


async def get_account(conn: AsyncConnection, account_id: str, user_id: str) -> Row | None:
    return _row(
        await conn.execute(
            text(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE id = :id AND user_id = :u"),
            {"id": account_id, "u": user_id},
        )
    )


async def set_account_halted(
    conn: AsyncConnection, account_id: str, user_id: str, halted: bool
) -> Row | None:
    return _row(
        await conn.execute(
            text(
                f"UPDATE accounts SET halted = :h, updated_at = now() "
                f"WHERE id = :id AND user_id = :u RETURNING {_ACCOUNT_COLUMNS}"
            ),
            {"h": halted, "id": account_id, "u": user_id},
        )
    )


async def get_account_credentials(conn: AsyncConnection, account_id: str) -> Row | None:
    return _row(
        await conn.execute(
            text("SELECT id, broker, credentials FROM accounts WHERE id = :id"), {"id": account_id}
        )
    )


# subscriptions ----------------------------------------------------------------------------
_SUBSCRIPTION_COLUMNS = (
    "id, follower_id, master_id, account_id, sizing, caps, filters, paused, created_at, updated_at"
)


async def create_subscription(conn: AsyncConnection, values: Row) -> Row:
    try:
        async with conn.begin_nested():
            result = await conn.execute(
                text(
                    "INSERT INTO subscriptions (id, follower_id, master_id, account_id, sizing, "
                    "caps, filters, paused) VALUES (:id, :follower_id, :master_id, :account_id, "
                    "CAST(:sizing AS jsonb), CAST(:caps AS jsonb), CAST(:filters AS jsonb), "
                    f":paused) RETURNING {_SUBSCRIPTION_COLUMNS}"
                ),
                {**values, **{k: json.dumps(values[k]) for k in ("sizing", "caps", "filters")}},
            )
    except IntegrityError as exc:
        raise Conflict("subscription_exists") from exc
    row = _row(result)
    assert row is not None
    return row


async def list_subscriptions(conn: AsyncConnection, follower_id: str) -> list[Row]:
    return _rows(
        await conn.execute(
            text(
                f"SELECT {_SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE follower_id = :f "
                "ORDER BY created_at"
            ),
            {"f": follower_id},
        )
    )


async def update_subscription(
    conn: AsyncConnection, subscription_id: str, follower_id: str, changes: Row
) -> Row | None:
    assignments = []
    params: Row = {"id": subscription_id, "f": follower_id}
    for column in ("sizing", "caps", "filters"):
        if column in changes:
            assignments.append(f"{column} = CAST(:{column} AS jsonb)")
            params[column] = json.dumps(changes[column])
    if "paused" in changes:
        assignments.append("paused = :paused")
        params["paused"] = changes["paused"]
    assignments.append("updated_at = now()")
    return _row(
        await conn.execute(
            text(
                f"UPDATE subscriptions SET {', '.join(assignments)} "
                f"WHERE id = :id AND follower_id = :f RETURNING {_SUBSCRIPTION_COLUMNS}"
            ),
            params,
        )
    )


async def delete_subscription(
    conn: AsyncConnection, subscription_id: str, follower_id: str
) -> bool:
    result = await conn.execute(
        text("DELETE FROM subscriptions WHERE id = :id AND follower_id = :f RETURNING id"),
        {"id": subscription_id, "f": follower_id},
    )
    return result.first() is not None


async def load_targets(conn: AsyncConnection, master_id: str) -> list[Row]:
    """Every subscription to a master with what the planner and the sender need."""
    return _rows(
        await conn.execute(
            text(
                "SELECT s.id AS subscription_id, s.follower_id, s.account_id, s.sizing, s.caps, "
                "s.filters, s.paused, a.halted AS account_halted, a.broker, a.credentials "
                "FROM subscriptions s JOIN accounts a ON a.id = s.account_id "
                "WHERE s.master_id = :m"
            ),
            {"m": master_id},
        )
    )


# master orders ----------------------------------------------------------------------------
_ORDER_COLUMNS = (
    "id, master_id, account_id, client_order_id, request_hash, symbol, side, qty, type, "
    "limit_price, stop_price, time_in_force, status, created_at, published_at, planned_at"
)


async def insert_master_order(conn: AsyncConnection, values: Row) -> Row | None:
    """Insert unless (master, client_order_id) exists; None means it already existed."""
    return _row(
        await conn.execute(
            text(
                "INSERT INTO master_orders (id, master_id, account_id, client_order_id, "
                "request_hash, symbol, side, qty, type, limit_price, stop_price, time_in_force) "
                "VALUES (:id, :master_id, :account_id, :client_order_id, :request_hash, :symbol, "
                ":side, :qty, :type, :limit_price, :stop_price, :time_in_force) "
                f"ON CONFLICT (master_id, client_order_id) DO NOTHING RETURNING {_ORDER_COLUMNS}"
            ),
            values,
        )
    )


async def get_master_order_by_client_id(
    conn: AsyncConnection, master_id: str, client_order_id: str
) -> Row | None:
    return _row(
        await conn.execute(
            text(
                f"SELECT {_ORDER_COLUMNS} FROM master_orders "
                "WHERE master_id = :m AND client_order_id = :c"
            ),
            {"m": master_id, "c": client_order_id},
        )
    )


async def get_master_order(conn: AsyncConnection, order_id: str, master_id: str) -> Row | None:
    return _row(
        await conn.execute(
            text(f"SELECT {_ORDER_COLUMNS} FROM master_orders WHERE id = :id AND master_id = :m"),
            {"id": order_id, "m": master_id},
        )
    )


async def mark_published(conn: AsyncConnection, order_id: str) -> None:
    await conn.execute(
        text(
            "UPDATE master_orders SET published_at = now() WHERE id = :id AND published_at IS NULL"
        ),
        {"id": order_id},
    )


async def unpublished_orders(conn: AsyncConnection, older_than_s: float, limit: int) -> list[Row]:
    return _rows(
        await conn.execute(
            text(
                f"SELECT {_ORDER_COLUMNS} FROM master_orders WHERE published_at IS NULL "
                "AND created_at < now() - make_interval(secs => :age) "
                "ORDER BY created_at LIMIT :limit"
            ),
            {"age": older_than_s, "limit": limit},
        )
    )


async def mark_planned(conn: AsyncConnection, order_id: str) -> None:
    await conn.execute(
        text("UPDATE master_orders SET planned_at = now() WHERE id = :id AND planned_at IS NULL"),
        {"id": order_id},
    )


_OPEN_STATUSES = sorted(s.value for s in LegStatus if s not in SETTLED)


async def order_progress(conn: AsyncConnection, order_id: str) -> Row:
    """Legs by status, and the fan-out time once every leg has settled."""
    rows = _rows(
        await conn.execute(
            text("SELECT status, count(*) AS n FROM legs WHERE order_id = :id GROUP BY status"),
            {"id": order_id},
        )
    )
    by_status = {row["status"]: int(row["n"]) for row in rows}
    timing = _row(
        await conn.execute(
            text(
                "SELECT o.planned_at, "
                "EXTRACT(EPOCH FROM (max(l.settled_at) - o.created_at)) * 1000 AS fanout_ms "
                "FROM master_orders o LEFT JOIN legs l ON l.order_id = o.id "
                "WHERE o.id = :id GROUP BY o.id"
            ),
            {"id": order_id},
        )
    )
    open_legs = sum(n for status, n in by_status.items() if status in _OPEN_STATUSES)
    planned = timing is not None and timing["planned_at"] is not None
    fanout_ms = None
    if planned and open_legs == 0 and timing is not None and timing["fanout_ms"] is not None:
        fanout_ms = round(float(timing["fanout_ms"]), 3)
    status = "accepted" if not planned else ("replicating" if open_legs else "replicated")
    return {
        "status": status,
        "total": sum(by_status.values()),
        "by_status": by_status,
        "fanout_ms": fanout_ms,
    }


# legs -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LegOutcome:
    leg_id: str
    status: LegStatus
    reason: str | None = None
    broker_order_id: str | None = None
    filled_qty: Decimal | None = None
    filled_avg_price: Decimal | None = None
    recheck_after_s: float | None = None  # for legs left in doubt: when the sweeper may look


_LEG_COLUMNS = (
    "id, order_id, master_id, subscription_id, follower_id, account_id, action, client_order_id, "
    "symbol, side, qty, type, time_in_force, limit_price, stop_price, status, reason, details, "
    "broker_order_id, filled_qty, filled_avg_price, attempts, created_at, updated_at, settled_at"
)


async def insert_legs(
    conn: AsyncConnection, master_id: str, legs: Sequence[PlannedLeg], lease_s: float
) -> list[str]:
    """One bulk insert; returns the ids this call inserted (existing legs are left alone)."""
    if not legs:
        return []
    first = legs[0]
    result = await conn.execute(
        text(
            "INSERT INTO legs (id, order_id, master_id, subscription_id, follower_id, account_id, "
            "action, client_order_id, symbol, side, qty, type, time_in_force, limit_price, "
            "stop_price, status, reason, details, attempts, lease_expires_at, last_sent_at, "
            "settled_at) "
            "SELECT v.id, :order_id, :master_id, v.subscription_id, v.follower_id, v.account_id, "
            ":action, v.client_order_id, :symbol, v.side, v.qty, :type, :tif, :limit_price, "
            ":stop_price, v.status, v.reason, CAST(v.details AS jsonb), "
            "CASE WHEN v.status = 'submitting' THEN 1 ELSE 0 END, "
            "CASE WHEN v.status = 'submitting' THEN now() + make_interval(secs => :lease) END, "
            "CASE WHEN v.status = 'submitting' THEN now() END, "
            "CASE WHEN v.status = 'skipped' THEN now() END "
            "FROM unnest(CAST(:ids AS uuid[]), CAST(:subscription_ids AS uuid[]), "
            "CAST(:follower_ids AS uuid[]), CAST(:account_ids AS uuid[]), "
            "CAST(:client_order_ids AS text[]), CAST(:sides AS text[]), CAST(:qtys AS numeric[]), "
            "CAST(:statuses AS text[]), CAST(:reasons AS text[]), CAST(:details AS text[])) "
            "AS v(id, subscription_id, follower_id, account_id, client_order_id, side, qty, "
            "status, reason, details) "
            "ON CONFLICT DO NOTHING RETURNING id"
        ),
        {
            "order_id": first.order_id,
            "master_id": master_id,
            "action": first.action,
            "symbol": first.symbol,
            "type": first.type.value,
            "tif": first.time_in_force.value,
            "limit_price": first.limit_price,
            "stop_price": first.stop_price,
            "lease": lease_s,
            "ids": [leg.leg_id for leg in legs],
            "subscription_ids": [leg.subscription_id for leg in legs],
            "follower_ids": [leg.follower_id for leg in legs],
            "account_ids": [leg.account_id for leg in legs],
            "client_order_ids": [leg.client_order_id for leg in legs],
            "sides": [leg.side.value for leg in legs],
            "qtys": [leg.qty for leg in legs],
            "statuses": [leg.status.value for leg in legs],
            "reasons": [leg.reason for leg in legs],
            "details": [json.dumps(leg.details) for leg in legs],
        },
    )
    return [str(row[0]) for row in result.all()]


async def settle_legs(conn: AsyncConnection, outcomes: Sequence[LegOutcome]) -> list[Row]:
    """One bulk update of legs still in doubt; legs another actor settled are left alone."""
    if not outcomes:
        return []
    settled = [s.value for s in SETTLED]
    result = await conn.execute(
        text(
            "UPDATE legs SET status = v.status, reason = COALESCE(v.reason, legs.reason), "
            "broker_order_id = COALESCE(v.broker_order_id, legs.broker_order_id), "
            "filled_qty = COALESCE(v.filled_qty, legs.filled_qty), "
            "filled_avg_price = COALESCE(v.filled_avg_price, legs.filled_avg_price), "
            "updated_at = now(), "
            "settled_at = CASE WHEN v.status = ANY(CAST(:settled AS text[])) THEN now() END, "
            "lease_expires_at = CASE WHEN v.recheck IS NULL THEN NULL "
            "ELSE now() + make_interval(secs => v.recheck) END "
            "FROM unnest(CAST(:ids AS uuid[]), CAST(:statuses AS text[]), "
            "CAST(:reasons AS text[]), CAST(:broker_ids AS text[]), CAST(:filled AS numeric[]), "
            "CAST(:prices AS numeric[]), CAST(:rechecks AS float8[])) "
            "AS v(id, status, reason, broker_order_id, filled_qty, filled_avg_price, recheck) "
            "WHERE legs.id = v.id AND legs.status = ANY(CAST(:in_doubt AS text[])) "
            f"RETURNING {', '.join('legs.' + c.strip() for c in _LEG_COLUMNS.split(','))}"
        ),
        {
            "settled": settled,
            "in_doubt": [s.value for s in IN_DOUBT],
            "ids": [o.leg_id for o in outcomes],
            "statuses": [o.status.value for o in outcomes],
            "reasons": [o.reason for o in outcomes],
            "broker_ids": [o.broker_order_id for o in outcomes],
            "filled": [o.filled_qty for o in outcomes],
            "prices": [o.filled_avg_price for o in outcomes],
            "rechecks": [o.recheck_after_s for o in outcomes],
        },
    )
    return _rows(result)


async def claim_in_doubt(conn: AsyncConnection, limit: int, lease_s: float) -> list[Row]:
    """Atomically take legs whose lease ran out; concurrent sweepers never take the same leg."""
    return _rows(
        await conn.execute(
            text(
                "UPDATE legs SET lease_expires_at = now() + make_interval(secs => :lease), "
                "attempts = attempts + 1, updated_at = now() "
                "WHERE id IN (SELECT id FROM legs WHERE status IN ('submitting', 'unknown') "
                "AND lease_expires_at < now() ORDER BY lease_expires_at LIMIT :limit "
                "FOR UPDATE SKIP LOCKED) "
                "RETURNING legs.id, legs.order_id, legs.master_id, legs.follower_id, "
                "legs.account_id, legs.client_order_id, legs.symbol, legs.side, legs.qty, "
                "legs.type, legs.time_in_force, legs.limit_price, legs.stop_price, legs.status, "
                "legs.attempts, legs.last_sent_at, "
                "(SELECT broker FROM accounts a WHERE a.id = legs.account_id) AS broker, "
                "(SELECT credentials FROM accounts a WHERE a.id = legs.account_id) AS credentials"
            ),
            {"lease": lease_s, "limit": limit},
        )
    )


async def renew_leases(conn: AsyncConnection, leg_ids: Sequence[str], lease_s: float) -> int:
    """Extend the lease of legs a live worker is still sending, so no sweeper steps in."""
    result = await conn.execute(
        text(
            "UPDATE legs SET lease_expires_at = now() + make_interval(secs => :lease) "
            "WHERE id = ANY(CAST(:ids AS uuid[])) AND status = 'submitting'"
        ),
        {"ids": list(leg_ids), "lease": lease_s},
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def mark_sent(conn: AsyncConnection, leg_id: str, lease_s: float) -> None:
    await conn.execute(
        text(
            "UPDATE legs SET last_sent_at = now(), status = 'submitting', "
            "lease_expires_at = now() + make_interval(secs => :lease), updated_at = now() "
            "WHERE id = :id AND status IN ('submitting', 'unknown')"
        ),
        {"id": leg_id, "lease": lease_s},
    )


async def list_copies(
    conn: AsyncConnection, follower_id: str, order_id: str | None, limit: int
) -> list[Row]:
    clause = " AND order_id = :o" if order_id else ""
    params: Row = {"f": follower_id, "limit": limit}
    if order_id:
        params["o"] = order_id
    return _rows(
        await conn.execute(
            text(
                f"SELECT {_LEG_COLUMNS} FROM legs WHERE follower_id = :f{clause} "
                "ORDER BY created_at DESC, id LIMIT :limit"
            ),
            params,
        )
    )


async def list_copies_by_ids(conn: AsyncConnection, leg_ids: Sequence[str]) -> list[Row]:
    return _rows(
        await conn.execute(
            text(f"SELECT {_LEG_COLUMNS} FROM legs WHERE id = ANY(CAST(:ids AS uuid[]))"),
            {"ids": list(leg_ids)},
        )
    )


async def count_unsettled_legs(conn: AsyncConnection) -> int:
    result = await conn.execute(
        text("SELECT count(*) FROM legs WHERE status IN ('planned', 'submitting', 'unknown')")
    )
    return int(result.scalar_one())
