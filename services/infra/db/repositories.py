"""Repositories: every SQL statement of the service lives here. Callers own the transaction."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
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
    # Plain tuples zipped with the keys once: SQLAlchemy's per-row mapping views cost more
    # than the query on the fan-out's hot path.
    keys = tuple(result.keys())
    return [dict(zip(keys, row, strict=True)) for row in result.all()]


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


async def load_targets(
    conn: AsyncConnection, master_id: str, account_ids: Sequence[str] | None = None
) -> list[Row]:
    """Every subscription to a master (or those of `account_ids`) with what the planner and the
    sender need."""
    only = "" if account_ids is None else " AND s.account_id = ANY(CAST(:ids AS uuid[]))"
    return _rows(
        await conn.execute(
            text(
                "SELECT s.id AS subscription_id, s.follower_id, s.account_id, s.sizing, s.caps, "
                "s.filters, s.paused, a.halted AS account_halted, a.broker, a.credentials, "
                "s.updated_at AS subscription_version, a.updated_at AS account_version "
                "FROM subscriptions s JOIN accounts a ON a.id = s.account_id "
                f"WHERE s.master_id = :m{only}"
            ),
            {"m": master_id, "ids": list(account_ids or [])},
        )
    )


# master orders ----------------------------------------------------------------------------
_ORDER_COLUMNS = (
    "id, master_id, account_id, client_order_id, request_hash, symbol, side, qty, type, "
    "limit_price, stop_price, time_in_force, status, created_at, published_at, planned_at, "
    "origin, broker_client_order_id"
)


async def insert_master_order(conn: AsyncConnection, values: Row) -> Row | None:
    """Insert unless (master, client_order_id) exists or the account is not the master's; None
    means one of the two (the caller tells which on that rare path). One round trip."""
    return _row(
        await conn.execute(
            text(
                "INSERT INTO master_orders (id, master_id, account_id, client_order_id, "
                "request_hash, symbol, side, qty, type, limit_price, stop_price, time_in_force) "
                "SELECT :id, :master_id, :account_id, :client_order_id, :request_hash, :symbol, "
                ":side, :qty, :type, :limit_price, :stop_price, :time_in_force "
                "WHERE EXISTS (SELECT 1 FROM accounts WHERE id = CAST(:account_id AS uuid) "
                "AND user_id = CAST(:master_id AS uuid)) "
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


async def list_master_orders(conn: AsyncConnection, master_id: str, limit: int) -> list[Row]:
    return _rows(
        await conn.execute(
            text(
                f"SELECT {_ORDER_COLUMNS} FROM master_orders WHERE master_id = :m "
                "ORDER BY created_at DESC LIMIT :limit"
            ),
            {"m": master_id, "limit": limit},
        )
    )


async def mark_published(conn: AsyncConnection, order_ids: Sequence[str]) -> None:
    await conn.execute(
        text(
            "UPDATE master_orders SET published_at = now() "
            "WHERE id = ANY(CAST(:ids AS uuid[])) AND published_at IS NULL"
        ),
        {"ids": list(order_ids)},
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


_MASTER_OPEN = "('planned', 'submitting', 'unknown', 'accepted', 'partially_filled')"


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
    master_account: Row | None  # id, broker, credentials


async def order_state(conn: AsyncConnection, order_id: str) -> OrderState | None:
    row = _row(
        await conn.execute(
            text(
                "SELECT o.plan, o.shards_recorded, EXISTS (SELECT 1 FROM legs l "
                "WHERE l.account_id = o.account_id AND l.action = 'master' "
                f"AND l.status IN {_MASTER_OPEN}) AS master_busy, "
                "u.targets_version, ARRAY(SELECT scope FROM halts) AS halts, "
                "a.id AS account_id, a.broker, a.credentials "
                "FROM master_orders o JOIN users u ON u.id = o.master_id "
                "LEFT JOIN accounts a ON a.id = o.account_id WHERE o.id = :id"
            ),
            {"id": order_id},
        )
    )
    if row is None:
        return None
    account = None
    if row["account_id"] is not None:
        account = {
            "id": row["account_id"],
            "broker": row["broker"],
            "credentials": row["credentials"],
        }
    return OrderState(
        plan=row["plan"],
        shards_recorded=set(row["shards_recorded"] or []),
        master_busy=bool(row["master_busy"]),
        targets_version=int(row["targets_version"]),
        halts={str(scope) for scope in row["halts"] or []},
        master_account=account,
    )


async def fix_plan(conn: AsyncConnection, order_id: str, plan: str) -> tuple[Any, set[int]]:
    """Store this plan unless one is stored already; returns the stored one (first one wins)."""
    row = _row(
        await conn.execute(
            text(
                "UPDATE master_orders SET plan = COALESCE(plan, CAST(:plan AS jsonb)) "
                "WHERE id = :id RETURNING plan, shards_recorded"
            ),
            {"id": order_id, "plan": plan},
        )
    )
    if row is None:
        raise LookupError(f"master order {order_id} does not exist")
    return row["plan"], set(row["shards_recorded"] or [])


async def shard_recorded(conn: AsyncConnection, order_id: str, shard: int, shards: int) -> None:
    """Count a shard as recorded (idempotent); the order is planned once all of them are."""
    await conn.execute(
        text(
            "UPDATE master_orders SET shards_recorded = CASE "
            "WHEN CAST(:shard AS integer) = ANY(shards_recorded) THEN shards_recorded "
            "ELSE array_append(shards_recorded, CAST(:shard AS integer)) END "
            "WHERE id = :id"
        ),
        {"id": order_id, "shard": shard},
    )
    await conn.execute(
        text(
            "UPDATE master_orders SET planned_at = now() WHERE id = :id AND planned_at IS NULL "
            "AND cardinality(shards_recorded) >= :shards"
        ),
        {"id": order_id, "shards": shards},
    )


_OPEN_STATUSES = sorted(s.value for s in LegStatus if s not in SETTLED)


async def order_progress(conn: AsyncConnection, order_id: str) -> Row:
    """Follower legs by status, the master's own leg, and the fan-out time once every follower
    leg has settled (master order created → last follower leg settled)."""
    rows = _rows(
        await conn.execute(
            text(
                "SELECT status, count(*) AS n FROM legs WHERE order_id = :id "
                "AND action <> 'master' GROUP BY status"
            ),
            {"id": order_id},
        )
    )
    by_status = {row["status"]: int(row["n"]) for row in rows}
    timing = _row(
        await conn.execute(
            text(
                "SELECT o.planned_at, o.cancel_requested_at, "
                "EXTRACT(EPOCH FROM (max(l.settled_at) - o.created_at)) * 1000 AS fanout_ms "
                "FROM master_orders o "
                "LEFT JOIN legs l ON l.order_id = o.id AND l.action <> 'master' "
                "WHERE o.id = :id GROUP BY o.id"
            ),
            {"id": order_id},
        )
    )
    master = _row(
        await conn.execute(
            text(
                "SELECT status, reason, broker_order_id, filled_qty, filled_avg_price FROM legs "
                "WHERE order_id = :id AND action = 'master'"
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
        "master": master,
        "cancel_requested": timing is not None and timing["cancel_requested_at"] is not None,
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


# What settling returns: enough for leg events and the ledger, no jsonb to decode.
_SETTLED_COLUMNS = ", ".join(
    "legs." + c
    for c in (
        "id",
        "order_id",
        "master_id",
        "follower_id",
        "account_id",
        "action",
        "symbol",
        "side",
        "qty",
        "status",
        "reason",
        "client_order_id",
        "broker_order_id",
        "filled_qty",
        "updated_at",
    )
)

_CLAIMED = (
    ", ".join("legs." + c.strip() for c in _LEG_COLUMNS.split(","))
    + ", legs.version, legs.last_sent_at, "
    "(SELECT broker FROM accounts a WHERE a.id = legs.account_id) AS broker, "
    "(SELECT credentials FROM accounts a WHERE a.id = legs.account_id) AS credentials"
)


async def _claim(
    conn: AsyncConnection, candidates: str, params: Row, lease_s: float, also_set: str = ""
) -> list[Row]:
    """Take the legs `candidates` selects (a locking SELECT of ids, SKIP LOCKED) under a lease,
    atomically: concurrent sweepers never take the same leg."""
    return _rows(
        await conn.execute(
            text(
                "UPDATE legs SET lease_expires_at = now() + make_interval(secs => :lease)"
                f"{also_set} WHERE id IN ({candidates}) RETURNING {_CLAIMED}"
            ),
            {**params, "lease": lease_s},
        )
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
            "v.action, v.client_order_id, :symbol, v.side, v.qty, :type, :tif, :limit_price, "
            ":stop_price, v.status, v.reason, CAST(v.details AS jsonb), "
            "CASE WHEN v.status = 'submitting' THEN 1 ELSE 0 END, "
            "CASE WHEN v.status = 'submitting' THEN now() + make_interval(secs => :lease) END, "
            "CASE WHEN v.status = 'submitting' THEN now() END, "
            "CASE WHEN v.status = 'skipped' THEN now() END "
            "FROM unnest(CAST(:ids AS uuid[]), CAST(:subscription_ids AS uuid[]), "
            "CAST(:follower_ids AS uuid[]), CAST(:account_ids AS uuid[]), "
            "CAST(:actions AS text[]), CAST(:client_order_ids AS text[]), CAST(:sides AS text[]), "
            "CAST(:qtys AS numeric[]), CAST(:statuses AS text[]), CAST(:reasons AS text[]), "
            "CAST(:details AS text[])) "
            "AS v(id, subscription_id, follower_id, account_id, action, client_order_id, side, "
            "qty, status, reason, details) "
            "ON CONFLICT DO NOTHING RETURNING id"
        ),
        {
            "order_id": first.order_id,
            "master_id": master_id,
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
            "actions": [leg.action for leg in legs],
            "client_order_ids": [leg.client_order_id for leg in legs],
            "sides": [leg.side.value for leg in legs],
            "qtys": [leg.qty for leg in legs],
            "statuses": [leg.status.value for leg in legs],
            "reasons": [leg.reason for leg in legs],
            "details": [json.dumps(leg.details) for leg in legs],
        },
    )
    return [str(row[0]) for row in result.all()]


async def settle_legs(
    conn: AsyncConnection,
    outcomes: Sequence[LegOutcome],
    from_statuses: frozenset[LegStatus] = IN_DOUBT,
) -> list[Row]:
    """One bulk update of legs still in `from_statuses` (in doubt by default); legs another
    actor settled meanwhile are left alone. Legs that end unfilled release their ledger."""
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
            "settled_at = CASE WHEN v.status = ANY(CAST(:settled AS text[])) "
            "THEN COALESCE(legs.settled_at, now()) END, "
            "lease_expires_at = CASE WHEN v.recheck IS NULL THEN NULL "
            "ELSE now() + make_interval(secs => v.recheck) END "
            "FROM unnest(CAST(:ids AS uuid[]), CAST(:statuses AS text[]), "
            "CAST(:reasons AS text[]), CAST(:broker_ids AS text[]), CAST(:filled AS numeric[]), "
            "CAST(:prices AS numeric[]), CAST(:rechecks AS float8[])) "
            "AS v(id, status, reason, broker_order_id, filled_qty, filled_avg_price, recheck) "
            "WHERE legs.id = v.id AND legs.status = ANY(CAST(:from_statuses AS text[])) "
            f"RETURNING {_SETTLED_COLUMNS}"
        ),
        {
            "settled": settled,
            "from_statuses": [s.value for s in from_statuses],
            "ids": [o.leg_id for o in outcomes],
            "statuses": [o.status.value for o in outcomes],
            "reasons": [o.reason for o in outcomes],
            "broker_ids": [o.broker_order_id for o in outcomes],
            "filled": [o.filled_qty for o in outcomes],
            "prices": [o.filled_avg_price for o in outcomes],
            "rechecks": [o.recheck_after_s for o in outcomes],
        },
    )
    rows = _rows(result)
    await release_unfilled(conn, rows)
    return rows


_UNFILLED_END = frozenset({"rejected", "failed", "canceled"})
IN_DOUBT_STATUSES = IN_DOUBT
OPEN_AT_BROKER_STATUSES = frozenset({LegStatus.ACCEPTED, LegStatus.PARTIALLY_FILLED})


async def release_unfilled(conn: AsyncConnection, rows: Sequence[Row]) -> None:
    """Give back the ledger reservation of follower legs that ended without (full) fills."""
    ids, symbols, deltas = [], [], []
    for row in rows:
        if row["status"] not in _UNFILLED_END or row["action"] == "master" or row["qty"] is None:
            continue
        unfilled = Decimal(row["qty"]) - Decimal(row["filled_qty"] or 0)
        if unfilled <= 0:
            continue
        ids.append(str(row["account_id"]))
        symbols.append(row["symbol"])
        deltas.append(-unfilled if row["side"] == "buy" else unfilled)
    await add_to_ledger(conn, ids, symbols, deltas)


_LEDGER_UPSERT = (
    "INSERT INTO risk_positions (account_id, symbol, qty) "
    "SELECT a, s, sum(q) FROM unnest(CAST(:a AS uuid[]), CAST(:s AS text[]), "
    "CAST(:q AS numeric[])) AS v(a, s, q) GROUP BY a, s ORDER BY a, s "
    "ON CONFLICT (account_id, symbol) DO UPDATE SET qty = risk_positions.qty + EXCLUDED.qty"
)


async def add_to_ledger(
    conn: AsyncConnection, account_ids: list[str], symbols: list[str], deltas: list[Decimal]
) -> None:
    if not account_ids:
        return
    await conn.execute(text(_LEDGER_UPSERT), {"a": account_ids, "s": symbols, "q": deltas})


# risk state -------------------------------------------------------------------------------
@dataclass(frozen=True)
class RiskRow:
    orders_today: int
    positions: dict[str, Decimal]  # symbol → signed ledger quantity (non-zero; see lock_risk)


def _day_of(day: date | Mapping[str, date], account_id: str) -> date:
    """`day` is one trading day for every account, or each account's own (its broker's)."""
    return day if isinstance(day, date) else day[account_id]


async def lock_risk(
    conn: AsyncConnection,
    account_ids: Sequence[str],
    day: date | Mapping[str, date],
    symbol: str,
    every_symbol_for: Collection[str] = (),
) -> dict[str, RiskRow]:
    """Lock the risk rows of these accounts (in id order, so concurrent workers never deadlock)
    and read their day counters and ledger. Hold the transaction until the legs are recorded.

    The ledger read is `symbol` only, plus every open symbol of the accounts in
    `every_symbol_for` (those with a max-open-positions cap): a follower with thousands of
    copied positions does not make every order read all of them."""
    if not account_ids:
        return {}
    ids = sorted(set(account_ids))
    lock = text(
        "SELECT account_id, trading_day, orders_today FROM risk_accounts "
        "WHERE account_id = ANY(CAST(:ids AS uuid[])) ORDER BY account_id FOR UPDATE"
    )
    counters = _rows(await conn.execute(lock, {"ids": ids}))
    if len(counters) < len(ids):
        # First order for some accounts: create their rows (in id order), then lock those.
        # Rows that exist are already locked, so no lock is ever taken out of order.
        known = {str(row["account_id"]) for row in counters}
        missing = [a for a in ids if a not in known]
        await conn.execute(
            text(
                "INSERT INTO risk_accounts (account_id, trading_day) "
                "SELECT a, d FROM unnest(CAST(:ids AS uuid[]), CAST(:days AS date[])) AS u(a, d) "
                "ORDER BY a ON CONFLICT (account_id) DO NOTHING"
            ),
            {"ids": missing, "days": [_day_of(day, a) for a in missing]},
        )
        counters += _rows(await conn.execute(lock, {"ids": missing}))
    # A statement of its own, after the locks: it sees every ledger change committed before.
    ledger = _rows(
        await conn.execute(
            text(
                "SELECT account_id, symbol, qty FROM risk_positions "
                "WHERE account_id = ANY(CAST(:ids AS uuid[])) AND qty <> 0 "
                "AND (symbol = :symbol OR account_id = ANY(CAST(:wide AS uuid[])))"
            ),
            {"ids": ids, "symbol": symbol, "wide": sorted(set(every_symbol_for))},
        )
    )
    positions: dict[str, dict[str, Decimal]] = {}
    for row in ledger:
        positions.setdefault(str(row["account_id"]), {})[row["symbol"]] = Decimal(row["qty"])
    return {
        str(row["account_id"]): RiskRow(
            orders_today=int(row["orders_today"])
            if row["trading_day"] == _day_of(day, str(row["account_id"]))
            else 0,
            positions=positions.get(str(row["account_id"]), {}),
        )
        for row in counters
    }


async def spend_risk(
    conn: AsyncConnection, legs: Sequence[PlannedLeg], day: date | Mapping[str, date]
) -> None:
    """Count recorded follower legs against the day's orders and reserve their ledger."""
    planned = [leg for leg in legs if leg.qty is not None and leg.action != "master"]
    if not planned:
        return
    days = {leg.account_id: _day_of(day, leg.account_id) for leg in planned}
    # One statement: the day counters and the ledger reservation (rows already locked).
    await conn.execute(
        text(
            "WITH counted AS (UPDATE risk_accounts r SET orders_today = CASE "
            "WHEN r.trading_day = u.d THEN r.orders_today + 1 ELSE 1 END, trading_day = u.d "
            "FROM unnest(CAST(:ca AS uuid[]), CAST(:cd AS date[])) AS u(a, d) "
            "WHERE r.account_id = u.a) " + _LEDGER_UPSERT
        ),
        {
            "ca": list(days),
            "cd": list(days.values()),
            "a": [leg.account_id for leg in planned],
            "s": [leg.symbol for leg in planned],
            "q": [leg.signed_qty for leg in planned],
        },
    )


# halts ------------------------------------------------------------------------------------
def master_halt_scope(master_id: str) -> str:
    return f"master:{master_id}"


GLOBAL_HALT_SCOPE = "global"


async def halt_scopes(conn: AsyncConnection) -> set[str]:
    return {str(row[0]) for row in (await conn.execute(text("SELECT scope FROM halts"))).all()}


async def set_halt(conn: AsyncConnection, scope: str, halted_by: str, halted: bool) -> None:
    if halted:
        await conn.execute(
            text(
                "INSERT INTO halts (scope, halted_by) VALUES (:s, :b) "
                "ON CONFLICT (scope) DO NOTHING"
            ),
            {"s": scope, "b": halted_by},
        )
    else:
        await conn.execute(text("DELETE FROM halts WHERE scope = :s"), {"s": scope})


# broker poller ----------------------------------------------------------------------------
async def master_accounts(conn: AsyncConnection) -> list[Row]:
    return _rows(
        await conn.execute(
            text(
                "SELECT a.id AS account_id, a.user_id AS master_id, a.broker, a.credentials "
                "FROM accounts a JOIN users u ON u.id = a.user_id "
                "WHERE u.role = 'master' AND NOT a.halted ORDER BY a.id"
            )
        )
    )


async def get_cursor(conn: AsyncConnection, account_id: str) -> datetime | None:
    value: datetime | None = (
        await conn.execute(
            text("SELECT cursor_at FROM poller_cursors WHERE account_id = :a"), {"a": account_id}
        )
    ).scalar_one_or_none()
    return value


async def set_cursor(conn: AsyncConnection, account_id: str, cursor_at: datetime) -> None:
    await conn.execute(
        text(
            "INSERT INTO poller_cursors (account_id, cursor_at) VALUES (:a, :c) "
            "ON CONFLICT (account_id) DO UPDATE SET cursor_at = GREATEST("
            "poller_cursors.cursor_at, EXCLUDED.cursor_at), updated_at = now()"
        ),
        {"a": account_id, "c": cursor_at},
    )


async def known_client_ids(
    conn: AsyncConnection, account_id: str, client_order_ids: Sequence[str]
) -> set[str]:
    """Which of these broker client ids are our own legs (placed by us, not by the master)."""
    rows = await conn.execute(
        text(
            "SELECT client_order_id FROM legs WHERE account_id = :a "
            "AND client_order_id = ANY(CAST(:c AS text[]))"
        ),
        {"a": account_id, "c": list(client_order_ids)},
    )
    return {str(row[0]) for row in rows.all()}


async def insert_broker_order(conn: AsyncConnection, values: Row) -> Row | None:
    """A master order seen at the broker, keyed by the broker's order id: seen twice, kept once."""
    return _row(
        await conn.execute(
            text(
                "INSERT INTO master_orders (id, master_id, account_id, client_order_id, "
                "request_hash, symbol, side, qty, type, limit_price, stop_price, time_in_force, "
                "origin, broker_client_order_id) VALUES (:id, :master_id, :account_id, "
                ":client_order_id, 'broker', :symbol, :side, :qty, :type, :limit_price, "
                ":stop_price, :time_in_force, 'broker', :broker_client_order_id) "
                f"ON CONFLICT (master_id, client_order_id) DO NOTHING RETURNING {_ORDER_COLUMNS}"
            ),
            values,
        )
    )


# replaces ---------------------------------------------------------------------------------
async def request_replace(
    conn: AsyncConnection,
    order_id: str,
    master_id: str,
    qty: Decimal | None,
    limit_price: Decimal | None,
    stop_price: Decimal | None,
) -> Row | None:
    return _row(
        await conn.execute(
            text(
                "UPDATE master_orders SET qty = COALESCE(:qty, qty), "
                "limit_price = COALESCE(:limit_price, limit_price), "
                "stop_price = COALESCE(:stop_price, stop_price), version = version + 1 "
                "WHERE id = :id AND master_id = :m AND cancel_requested_at IS NULL "
                f"RETURNING {_ORDER_COLUMNS}, version"
            ),
            {
                "id": order_id,
                "m": master_id,
                "qty": qty,
                "limit_price": limit_price,
                "stop_price": stop_price,
            },
        )
    )


async def claim_replaces(conn: AsyncConnection, limit: int, lease_s: float) -> list[Row]:
    """Open legs older than their master order's version."""
    return await _claim(
        conn,
        "SELECT l.id FROM legs l JOIN master_orders o ON o.id = l.order_id "
        "WHERE l.version < o.version AND o.cancel_requested_at IS NULL "
        "AND l.status IN ('accepted', 'partially_filled') "
        "AND (l.lease_expires_at IS NULL OR l.lease_expires_at < now()) "
        "LIMIT :limit FOR UPDATE OF l SKIP LOCKED",
        {"limit": limit},
        lease_s,
        ", updated_at = now()",
    )


async def orders_by_ids(conn: AsyncConnection, order_ids: Sequence[str]) -> dict[str, Row]:
    rows = _rows(
        await conn.execute(
            text(
                f"SELECT {_ORDER_COLUMNS}, version FROM master_orders "
                "WHERE id = ANY(CAST(:ids AS uuid[]))"
            ),
            {"ids": list(order_ids)},
        )
    )
    return {str(row["id"]): row for row in rows}


async def subscriptions_by_ids(
    conn: AsyncConnection, subscription_ids: Sequence[str]
) -> dict[str, Row]:
    rows = _rows(
        await conn.execute(
            text(
                "SELECT s.id AS subscription_id, s.follower_id, s.account_id, s.sizing, s.caps, "
                "s.filters, s.paused, a.halted AS account_halted, a.broker "
                "FROM subscriptions s JOIN accounts a ON a.id = s.account_id "
                "WHERE s.id = ANY(CAST(:ids AS uuid[]))"
            ),
            {"ids": list(subscription_ids)},
        )
    )
    return {str(row["subscription_id"]): row for row in rows}


async def reserve_replace(conn: AsyncConnection, leg: Row, version: int, qty: Decimal) -> Decimal:
    """Record the planned quantity of a leg's replace once per version, reserving its ledger
    change; a second call for the same version returns the first plan without reserving again."""
    details = dict(leg["details"] or {})
    pending = details.get("pending_replace")
    if pending and pending["version"] == version:
        return Decimal(pending["qty"])
    delta = qty - Decimal(leg["qty"])
    details["pending_replace"] = {"version": version, "qty": str(qty), "delta": str(delta)}
    await conn.execute(
        text("UPDATE legs SET details = CAST(:d AS jsonb) WHERE id = :id"),
        {"d": json.dumps(details), "id": str(leg["id"])},
    )
    if leg["action"] != "master" and delta != 0:
        signed = delta if leg["side"] == "buy" else -delta
        await add_to_ledger(conn, [str(leg["account_id"])], [leg["symbol"]], [signed])
    return qty


async def finish_replace(
    conn: AsyncConnection,
    leg_id: str,
    version: int,
    outcome: LegOutcome | None,
    client_order_id: str | None,
    qty: Decimal | None,
    keep_reservation: bool,
) -> Row | None:
    """Bring a leg to `version`: the replaced order's id, quantity and status (or give the
    reservation back when the replace did not happen)."""
    row = _row(
        await conn.execute(
            text(f"SELECT {_LEG_COLUMNS}, version FROM legs WHERE id = :id FOR UPDATE"),
            {"id": leg_id},
        )
    )
    if row is None or row["version"] >= version:
        return None
    details = dict(row["details"] or {})
    pending = details.pop("pending_replace", None)
    if pending and not keep_reservation and row["action"] != "master":
        delta = Decimal(pending["delta"])
        signed = delta if row["side"] == "buy" else -delta
        await add_to_ledger(conn, [str(row["account_id"])], [row["symbol"]], [-signed])
    if keep_reservation:
        details.setdefault("replaced", []).append(
            {
                "version": version,
                "from_qty": str(row["qty"]),
                "from_broker_order_id": row["broker_order_id"],
            }
        )
    updated = _row(
        await conn.execute(
            text(
                "UPDATE legs SET version = :v, details = CAST(:d AS jsonb), updated_at = now(), "
                "lease_expires_at = NULL, "
                "status = COALESCE(:status, status), reason = COALESCE(:reason, reason), "
                "qty = COALESCE(:qty, qty), client_order_id = COALESCE(:cid, client_order_id), "
                "broker_order_id = COALESCE(:bid, broker_order_id), "
                "filled_qty = COALESCE(:filled, filled_qty), "
                "filled_avg_price = COALESCE(:price, filled_avg_price) "
                f"WHERE id = :id RETURNING {_LEG_COLUMNS}"
            ),
            {
                "v": version,
                "d": json.dumps(details),
                "id": leg_id,
                "status": outcome.status.value if outcome else None,
                "reason": outcome.reason if outcome else None,
                "qty": qty,
                "cid": client_order_id,
                "bid": outcome.broker_order_id if outcome else None,
                "filled": outcome.filled_qty if outcome else None,
                "price": outcome.filled_avg_price if outcome else None,
            },
        )
    )
    return updated


async def claim_stale_open(
    conn: AsyncConnection, limit: int, older_than_s: float, lease_s: float
) -> list[Row]:
    """Legs open at their broker that nobody looked at for a while (fills, expiries)."""
    return await _claim(
        conn,
        "SELECT id FROM legs WHERE status IN ('accepted', 'partially_filled') "
        "AND updated_at < now() - make_interval(secs => :age) "
        "AND (lease_expires_at IS NULL OR lease_expires_at < now()) "
        "ORDER BY updated_at LIMIT :limit FOR UPDATE SKIP LOCKED",
        {"limit": limit, "age": older_than_s},
        lease_s,
    )


# cancels ----------------------------------------------------------------------------------
async def request_cancel(conn: AsyncConnection, order_id: str, master_id: str) -> Row | None:
    return _row(
        await conn.execute(
            text(
                "UPDATE master_orders SET cancel_requested_at = COALESCE(cancel_requested_at, "
                "now()) WHERE id = :id AND master_id = :m RETURNING id, cancel_requested_at"
            ),
            {"id": order_id, "m": master_id},
        )
    )


async def claim_cancels(conn: AsyncConnection, limit: int, lease_s: float) -> list[Row]:
    """Open legs of orders whose master asked to cancel."""
    return await _claim(
        conn,
        "SELECT l.id FROM legs l JOIN master_orders o ON o.id = l.order_id "
        "WHERE o.cancel_requested_at IS NOT NULL "
        "AND l.status IN ('accepted', 'partially_filled') "
        "AND (l.lease_expires_at IS NULL OR l.lease_expires_at < now()) "
        "LIMIT :limit FOR UPDATE OF l SKIP LOCKED",
        {"limit": limit},
        lease_s,
        ", updated_at = now()",
    )


async def claim_in_doubt(conn: AsyncConnection, limit: int, lease_s: float) -> list[Row]:
    """Legs whose lease ran out while submitting or unknown (each claim counts an attempt)."""
    return await _claim(
        conn,
        "SELECT id FROM legs WHERE status IN ('submitting', 'unknown') "
        "AND lease_expires_at < now() ORDER BY lease_expires_at LIMIT :limit "
        "FOR UPDATE SKIP LOCKED",
        {"limit": limit},
        lease_s,
        ", attempts = attempts + 1, updated_at = now()",
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
                f"SELECT {_LEG_COLUMNS} FROM legs WHERE follower_id = :f "
                f"AND action <> 'master'{clause} "
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
