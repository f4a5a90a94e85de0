"""Legs: one follower's (or the master's) order for one master order. Every status write is
guarded by the
transition table of replication.state; claims take legs under a lease (SKIP LOCKED)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from replication.model import PlannedLeg
from replication.state import (
    IN_DOUBT,
    OPEN_AT_BROKER,
    SETTLED,
    UNFILLED_END,
    LegStatus,
    allowed_moves,
    can_transition,
    predecessors,
)
from services.infra.db.repositories.base import Row, fetch_all, fetch_one
from services.infra.db.repositories.risk import add_to_ledger


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
    return fetch_all(
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


# Every status write is guarded by the transition table (replication.state): a row moves only
# along one of these "from>to" pairs, so a late or stale answer can never move a leg backwards
# (e.g. Alpaca's pending_cancel must not turn a partially filled leg back into accepted).
_MOVES = sorted(f"{current.value}>{target.value}" for current, target in allowed_moves())


_OPEN_AT_BROKER = sorted(s.value for s in OPEN_AT_BROKER)


_IN_DOUBT = sorted(s.value for s in IN_DOUBT)


_TO_SUBMITTING = sorted(s.value for s in predecessors(LegStatus.SUBMITTING))


async def settle_legs(conn: AsyncConnection, outcomes: Sequence[LegOutcome]) -> list[Row]:
    """The one way a broker's answer reaches a leg: one bulk update, each row only along an
    allowed move of the transition table (others were settled by another actor meanwhile, or
    the answer is stale: they are left alone). Legs that end unfilled release their ledger,
    exactly once, since terminal statuses have no move left."""
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
            "WHERE legs.id = v.id AND legs.status || '>' || v.status = ANY(CAST(:moves AS text[])) "
            f"RETURNING {_SETTLED_COLUMNS}"
        ),
        {
            "settled": settled,
            "moves": _MOVES,
            "ids": [o.leg_id for o in outcomes],
            "statuses": [o.status.value for o in outcomes],
            "reasons": [o.reason for o in outcomes],
            "broker_ids": [o.broker_order_id for o in outcomes],
            "filled": [o.filled_qty for o in outcomes],
            "prices": [o.filled_avg_price for o in outcomes],
            "rechecks": [o.recheck_after_s for o in outcomes],
        },
    )
    rows = fetch_all(result)
    await release_unfilled(conn, rows)
    return rows


_UNFILLED_END = frozenset(s.value for s in UNFILLED_END)


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


async def claim_replaces(conn: AsyncConnection, limit: int, lease_s: float) -> list[Row]:
    """Open legs older than their master order's version."""
    return await _claim(
        conn,
        "SELECT l.id FROM legs l JOIN master_orders o ON o.id = l.order_id "
        "WHERE l.version < o.version AND o.cancel_requested_at IS NULL "
        "AND l.status = ANY(CAST(:open_at_broker AS text[])) "
        "AND (l.lease_expires_at IS NULL OR l.lease_expires_at < now()) "
        "LIMIT :limit FOR UPDATE OF l SKIP LOCKED",
        {"limit": limit, "open_at_broker": _OPEN_AT_BROKER},
        lease_s,
        ", updated_at = now()",
    )


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
    row = fetch_one(
        await conn.execute(
            text(f"SELECT {_LEG_COLUMNS}, version FROM legs WHERE id = :id FOR UPDATE"),
            {"id": leg_id},
        )
    )
    if row is None or row["version"] >= version:
        return None
    if outcome is not None and not can_transition(LegStatus(row["status"]), outcome.status):
        outcome = None  # a stale answer: the table does not let the leg go back
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
    updated = fetch_one(
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
        "SELECT id FROM legs WHERE status = ANY(CAST(:open_at_broker AS text[])) "
        "AND updated_at < now() - make_interval(secs => :age) "
        "AND (lease_expires_at IS NULL OR lease_expires_at < now()) "
        "ORDER BY updated_at LIMIT :limit FOR UPDATE SKIP LOCKED",
        {"limit": limit, "age": older_than_s, "open_at_broker": _OPEN_AT_BROKER},
        lease_s,
    )


async def claim_cancels(conn: AsyncConnection, limit: int, lease_s: float) -> list[Row]:
    """Open legs of orders whose master asked to cancel."""
    return await _claim(
        conn,
        "SELECT l.id FROM legs l JOIN master_orders o ON o.id = l.order_id "
        "WHERE o.cancel_requested_at IS NOT NULL "
        "AND l.status = ANY(CAST(:open_at_broker AS text[])) "
        "AND (l.lease_expires_at IS NULL OR l.lease_expires_at < now()) "
        "LIMIT :limit FOR UPDATE OF l SKIP LOCKED",
        {"limit": limit, "open_at_broker": _OPEN_AT_BROKER},
        lease_s,
        ", updated_at = now()",
    )


async def claim_in_doubt(conn: AsyncConnection, limit: int, lease_s: float) -> list[Row]:
    """Legs whose lease ran out while submitting or unknown (each claim counts an attempt)."""
    return await _claim(
        conn,
        "SELECT id FROM legs WHERE status = ANY(CAST(:in_doubt AS text[])) "
        "AND lease_expires_at < now() ORDER BY lease_expires_at LIMIT :limit "
        "FOR UPDATE SKIP LOCKED",
        {"limit": limit, "in_doubt": _IN_DOUBT},
        lease_s,
        ", attempts = attempts + 1, updated_at = now()",
    )


async def renew_leases(conn: AsyncConnection, leg_ids: Sequence[str], lease_s: float) -> int:
    """Extend the lease of legs a live worker is still sending, so no sweeper steps in."""
    result = await conn.execute(
        text(
            "UPDATE legs SET lease_expires_at = now() + make_interval(secs => :lease) "
            "WHERE id = ANY(CAST(:ids AS uuid[])) AND status = :submitting"
        ),
        {"ids": list(leg_ids), "lease": lease_s, "submitting": LegStatus.SUBMITTING.value},
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def mark_sent(conn: AsyncConnection, leg_id: str, lease_s: float) -> None:
    await conn.execute(
        text(
            "UPDATE legs SET last_sent_at = now(), status = :submitting, "
            "lease_expires_at = now() + make_interval(secs => :lease), updated_at = now() "
            "WHERE id = :id AND status = ANY(CAST(:from AS text[]))"
        ),
        {
            "id": leg_id,
            "lease": lease_s,
            "submitting": LegStatus.SUBMITTING.value,
            "from": _TO_SUBMITTING,
        },
    )


async def list_copies(
    conn: AsyncConnection, follower_id: str, order_id: str | None, limit: int
) -> list[Row]:
    clause = " AND order_id = :o" if order_id else ""
    params: Row = {"f": follower_id, "limit": limit}
    if order_id:
        params["o"] = order_id
    return fetch_all(
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
    return fetch_all(
        await conn.execute(
            text(f"SELECT {_LEG_COLUMNS} FROM legs WHERE id = ANY(CAST(:ids AS uuid[]))"),
            {"ids": list(leg_ids)},
        )
    )


async def in_doubt_backlog(conn: AsyncConnection) -> tuple[int, float]:
    """Legs in doubt whose lease ran out (the sweeper's backlog) and the oldest one's age in
    seconds past its lease (0 when there is none)."""
    row = fetch_one(
        await conn.execute(
            text(
                "SELECT count(*) AS legs, "
                "COALESCE(EXTRACT(EPOCH FROM now() - min(lease_expires_at)), 0) AS oldest "
                "FROM legs WHERE status = ANY(CAST(:in_doubt AS text[])) "
                "AND lease_expires_at < now()"
            ),
            {"in_doubt": _IN_DOUBT},
        )
    )
    assert row is not None
    return int(row["legs"]), float(row["oldest"])
