"""Legs: one follower's (or the master's) order for one master order. Every status write is
guarded by the transition table of replication.state; claims take legs under a lease
(SKIP LOCKED)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from replication.model import PlannedLeg, quick_init
from replication.state import (
    SETTLED,
    UNFILLED_END,
    LegStatus,
    allowed_moves,
    can_transition,
)
from services.infra.db.repositories.base import (
    Connection,
    Row,
    columns,
    fetch_all_as,
    fetch_one_as,
    text,
)
from services.infra.db.repositories.risk import LedgerEntry, add_to_ledger


@quick_init
@dataclass(frozen=True)
class LegOutcome:
    leg_id: str
    status: LegStatus
    reason: str | None = None
    broker_order_id: str | None = None
    filled_qty: Decimal | None = None
    filled_avg_price: Decimal | None = None
    recheck_after_s: float | None = None  # for legs left in doubt: when the sweeper may look
    paced: bool = False  # recheck_after_s is an account's 429 gate opening (no more backoff)


@quick_init
@dataclass(frozen=True, slots=True)
class SettledLeg:
    """What a leg's change announces: enough for leg events and the ledger, no jsonb."""

    id: UUID
    order_id: UUID
    master_id: UUID
    subscription_id: UUID | None
    follower_id: UUID | None
    account_id: UUID
    action: str
    symbol: str
    side: str
    qty: Decimal | None
    status: str
    reason: str | None
    client_order_id: str
    broker_order_id: str | None
    filled_qty: Decimal | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Leg:
    id: UUID
    order_id: UUID
    master_id: UUID
    subscription_id: UUID | None
    follower_id: UUID | None
    account_id: UUID
    action: str
    client_order_id: str
    symbol: str
    side: str
    qty: Decimal | None
    type: str
    time_in_force: str
    limit_price: Decimal | None
    stop_price: Decimal | None
    status: str
    reason: str | None
    details: dict[str, Any]
    broker_order_id: str | None
    filled_qty: Decimal | None
    filled_avg_price: Decimal | None
    attempts: int
    created_at: datetime
    updated_at: datetime
    settled_at: datetime | None
    version: int
    cancel_requested_at: datetime | None  # a kill switch asked to cancel this copy


@dataclass(frozen=True, slots=True)
class ClaimedLeg(Leg):
    """A leg taken under a lease by the sweeper, with what talking to its broker needs."""

    last_sent_at: datetime | None
    broker: str
    credentials: bytes


_LEG_COLUMNS = columns(Leg)
_SETTLED_COLUMNS = columns(SettledLeg, "legs")


async def insert_legs(
    conn: Connection, master_id: str, legs: Sequence[PlannedLeg], lease_s: float
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


async def settle_legs(conn: Connection, outcomes: Sequence[LegOutcome]) -> list[SettledLeg]:
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
    rows = fetch_all_as(result, SettledLeg)
    await release_unfilled(conn, rows)
    return rows


_UNFILLED_END = frozenset(s.value for s in UNFILLED_END)


async def release_unfilled(conn: Connection, rows: Sequence[SettledLeg]) -> None:
    """Give back the ledger reservation of follower legs that ended without (full) fills."""
    entries = []
    for row in rows:
        if row.status not in _UNFILLED_END or row.subscription_id is None or row.qty is None:
            continue
        unfilled = row.qty - (row.filled_qty or 0)
        if unfilled > 0:
            entries.append(_entry(row, -unfilled if row.side == "buy" else unfilled))
    await add_to_ledger(conn, entries)


def _entry(leg: Leg | SettledLeg, delta: Decimal) -> LedgerEntry:
    assert leg.subscription_id is not None, "only follower legs hold copies"
    return LedgerEntry(str(leg.subscription_id), str(leg.account_id), leg.symbol, delta)


async def known_client_ids(
    conn: Connection, account_id: str, client_order_ids: Sequence[str]
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


async def reserve_replace(
    conn: Connection, leg: Leg, version: int, qty: Decimal, note: str | None = None
) -> Decimal:
    """Record the planned quantity of a leg's replace once per version, reserving its ledger
    change; a second call for the same version returns the first plan without reserving again.
    `note` (why the quantity differs from the master's, e.g. growth refused) is kept with it."""
    details = dict(leg.details or {})
    pending = details.get("pending_replace")
    if pending and pending["version"] == version:
        return Decimal(pending["qty"])
    delta = qty - (leg.qty or Decimal(0))
    details["pending_replace"] = {"version": version, "qty": str(qty), "delta": str(delta)}
    if note:
        details["pending_replace"]["note"] = note
    await conn.execute(
        text("UPDATE legs SET details = CAST(:d AS jsonb) WHERE id = :id"),
        {"d": json.dumps(details), "id": str(leg.id)},
    )
    if leg.subscription_id is not None and delta != 0:
        await add_to_ledger(conn, [_entry(leg, delta if leg.side == "buy" else -delta)])
    return qty


async def _settle_reservation(
    conn: Connection, row: Leg, version: int, keep_reservation: bool
) -> dict[str, Any]:
    """The leg's details after a replace attempt: the pending reservation is kept (recorded in
    `replaced`) or given back to the ledger when the replace did not happen."""
    details = dict(row.details or {})
    pending = details.pop("pending_replace", None)
    if pending and not keep_reservation and row.subscription_id is not None:
        delta = Decimal(pending["delta"])
        await add_to_ledger(conn, [_entry(row, -delta if row.side == "buy" else delta)])
    if keep_reservation:
        details.setdefault("replaced", []).append(
            {
                "version": version,
                "from_qty": str(row.qty),
                "from_broker_order_id": row.broker_order_id,
                **({"note": pending["note"]} if pending and pending.get("note") else {}),
            }
        )
    return details


async def finish_replace(
    conn: Connection,
    leg_id: str,
    version: int,
    outcome: LegOutcome | None,
    client_order_id: str | None,
    qty: Decimal | None,
    keep_reservation: bool,
) -> SettledLeg | None:
    """Bring a leg to `version`: the replaced order's id, quantity and status (or give the
    reservation back when the replace did not happen)."""
    row = fetch_one_as(
        await conn.execute(
            text(f"SELECT {_LEG_COLUMNS} FROM legs WHERE id = :id FOR UPDATE"), {"id": leg_id}
        ),
        Leg,
    )
    if row is None or row.version >= version:
        return None
    if outcome is not None and not can_transition(LegStatus(row.status), outcome.status):
        outcome = None  # a stale answer: the table does not let the leg go back
    details = await _settle_reservation(conn, row, version, keep_reservation)
    return fetch_one_as(
        await conn.execute(
            text(
                "UPDATE legs SET version = :v, details = CAST(:d AS jsonb), updated_at = now(), "
                "lease_expires_at = NULL, "
                "status = COALESCE(:status, status), reason = COALESCE(:reason, reason), "
                "qty = COALESCE(:qty, qty), client_order_id = COALESCE(:cid, client_order_id), "
                "broker_order_id = COALESCE(:bid, broker_order_id), "
                "filled_qty = COALESCE(:filled, filled_qty), "
                "filled_avg_price = COALESCE(:price, filled_avg_price) "
                f"WHERE id = :id RETURNING {_SETTLED_COLUMNS}"
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
        ),
        SettledLeg,
    )


async def list_copies(
    conn: Connection, follower_id: str, order_id: str | None, limit: int
) -> list[Leg]:
    clause = " AND order_id = :o" if order_id else ""
    params: Row = {"f": follower_id, "limit": limit}
    if order_id:
        params["o"] = order_id
    return fetch_all_as(
        await conn.execute(
            text(
                f"SELECT {_LEG_COLUMNS} FROM legs WHERE follower_id = :f "
                f"AND action <> 'master'{clause} "
                "ORDER BY created_at DESC, id LIMIT :limit"
            ),
            params,
        ),
        Leg,
    )


async def settled_by_ids(conn: Connection, leg_ids: Sequence[str]) -> list[SettledLeg]:
    """Legs as a change announces them (e.g. legs recorded as skipped)."""
    return fetch_all_as(
        await conn.execute(
            text(f"SELECT {_SETTLED_COLUMNS} FROM legs WHERE id = ANY(CAST(:ids AS uuid[]))"),
            {"ids": list(leg_ids)},
        ),
        SettledLeg,
    )
