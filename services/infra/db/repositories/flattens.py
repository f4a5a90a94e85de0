"""Flatten requests (kill switches that act) and ended subscriptions.

A flatten request names a scope — `global`, `master:<id>`, `account:<id>` or
`subscription:<id>` — whose copies are closed: resting copies are marked for cancel, and once
no copy in the scope is open or in doubt, each copied position is closed by a leg of a
flatten order (one per master and symbol), recorded exactly once (deterministic ids).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from replication.state import OPEN, OPEN_AT_BROKER
from services.infra.db.repositories.base import Connection, fetch_all_as, fetch_one_as, text

_OPEN_AT_BROKER = sorted(s.value for s in OPEN_AT_BROKER)
_NOT_FINAL = sorted(s.value for s in OPEN | OPEN_AT_BROKER)
_NAMESPACE = uuid.UUID("0b9cf0a5-5a2e-4c1e-9d0e-6f5b1e0c7a31")


@dataclass(frozen=True, slots=True)
class FlattenRequest:
    id: UUID
    scope: str
    requested_by: UUID
    created_at: datetime


@dataclass(frozen=True, slots=True)
class CopiedPosition:
    """One subscription's copied position in one symbol, with what closing it needs."""

    subscription_id: UUID
    master_id: UUID
    follower_id: UUID
    account_id: UUID
    symbol: str
    qty: Decimal
    broker: str
    credentials: bytes


def _scope(scope: str) -> tuple[str, dict[str, str]]:
    """The SQL condition on subscriptions `s` selecting a scope, and its parameter."""
    kind, _, value = scope.partition(":")
    if kind == "global":
        return "TRUE", {}
    column = {"master": "s.master_id", "account": "s.account_id", "subscription": "s.id"}[kind]
    return f"{column} = CAST(:scope_id AS uuid)", {"scope_id": value}


async def request_flatten(conn: Connection, scope: str, requested_by: str) -> str:
    _scope(scope)  # refuses an unknown scope before anything is stored
    request_id = str(uuid.uuid4())
    await conn.execute(
        text("INSERT INTO flatten_requests (id, scope, requested_by) VALUES (:id, :s, :b)"),
        {"id": request_id, "s": scope, "b": requested_by},
    )
    return request_id


async def claim_flatten(conn: Connection, lease_s: float) -> FlattenRequest | None:
    """The oldest pending request, under a lease (concurrent sweepers take different ones)."""
    return fetch_one_as(
        await conn.execute(
            text(
                "UPDATE flatten_requests SET claimed_until = now() + make_interval(secs => :l) "
                "WHERE id = (SELECT id FROM flatten_requests WHERE done_at IS NULL "
                "AND (claimed_until IS NULL OR claimed_until < now()) ORDER BY created_at "
                "LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id, scope, requested_by, created_at"
            ),
            {"l": lease_s},
        ),
        FlattenRequest,
    )


async def cancel_resting_copies(conn: Connection, scope: str) -> int:
    """Mark every copy resting at a broker in the scope for cancel (the sweeper's cancel pass)."""
    condition, params = _scope(scope)
    result = await conn.execute(
        text(
            "UPDATE legs SET cancel_requested_at = COALESCE(cancel_requested_at, now()) "
            "WHERE action <> 'master' AND status = ANY(CAST(:open AS text[])) "
            f"AND subscription_id IN (SELECT s.id FROM subscriptions s WHERE {condition})"
        ),
        {**params, "open": _OPEN_AT_BROKER},
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def open_copies(conn: Connection, scope: str) -> int:
    """Copies in the scope not final yet (in doubt, or resting at a broker)."""
    condition, params = _scope(scope)
    result = await conn.execute(
        text(
            "SELECT count(*) FROM legs WHERE action <> 'master' "
            "AND status = ANY(CAST(:open AS text[])) "
            f"AND subscription_id IN (SELECT s.id FROM subscriptions s WHERE {condition})"
        ),
        {**params, "open": _NOT_FINAL},
    )
    return int(result.scalar_one())


async def copied_positions(conn: Connection, scope: str) -> list[CopiedPosition]:
    condition, params = _scope(scope)
    return fetch_all_as(
        await conn.execute(
            text(
                "SELECT c.subscription_id, s.master_id, s.follower_id, c.account_id, c.symbol, "
                "c.qty, a.broker, a.credentials FROM copy_positions c "
                "JOIN subscriptions s ON s.id = c.subscription_id "
                "JOIN accounts a ON a.id = c.account_id "
                f"WHERE c.qty <> 0 AND {condition} ORDER BY c.account_id, c.subscription_id"
            ),
            params,
        ),
        CopiedPosition,
    )


async def flatten_order(
    conn: Connection, request_id: str, master_id: str, symbol: str, qty: Decimal
) -> str:
    """The order a flatten's closing legs of one master and symbol belong to (created once).

    It is never published to the replicators (no master leg, no fan-out): its legs are the
    closes themselves. Its side and quantity are nominal (the sum of what is closed)."""
    order_id = str(uuid.uuid5(_NAMESPACE, f"{request_id}/{master_id}/{symbol}"))
    await conn.execute(
        text(
            "INSERT INTO master_orders (id, master_id, account_id, client_order_id, "
            "request_hash, symbol, side, qty, type, time_in_force, origin, published_at, "
            "planned_at) SELECT :id, :m, a.id, :cid, 'flatten', :symbol, 'sell', :qty, "
            "'market', 'day', 'flatten', now(), now() FROM accounts a WHERE a.user_id = :m "
            "ORDER BY a.created_at LIMIT 1 ON CONFLICT DO NOTHING"
        ),
        {
            "id": order_id,
            "m": master_id,
            "cid": f"flatten:{request_id}:{symbol}",
            "symbol": symbol,
            "qty": qty,
        },
    )
    return order_id


async def finish_flatten(conn: Connection, request_id: str) -> None:
    await conn.execute(
        text("UPDATE flatten_requests SET done_at = now() WHERE id = :id"), {"id": request_id}
    )


async def end_subscription(conn: Connection, subscription_id: str, follower_id: str) -> bool:
    """Stop the subscription opening anything new; its copies keep following exits."""
    result = await conn.execute(
        text(
            "UPDATE subscriptions SET ending_at = COALESCE(ending_at, now()), updated_at = now() "
            "WHERE id = :id AND follower_id = :f RETURNING id"
        ),
        {"id": subscription_id, "f": follower_id},
    )
    return result.first() is not None


@dataclass(frozen=True, slots=True)
class EndedSubscription:
    id: UUID
    follower_id: UUID
    master_id: UUID
    account_id: UUID


async def drop_subscription(
    conn: Connection, subscription_id: str, follower_id: str
) -> EndedSubscription | None:
    """Remove the subscription now; its copies become the follower's own (no longer tracked)."""
    ended = fetch_one_as(
        await conn.execute(
            text(
                "DELETE FROM subscriptions WHERE id = :id AND follower_id = :f "
                "RETURNING id, follower_id, master_id, account_id"
            ),
            {"id": subscription_id, "f": follower_id},
        ),
        EndedSubscription,
    )
    if ended is None:
        return None
    await conn.execute(
        text("DELETE FROM copy_positions WHERE subscription_id = :id"), {"id": subscription_id}
    )
    return ended


async def end_flat_subscriptions(conn: Connection) -> list[EndedSubscription]:
    """Remove ended subscriptions whose copies are flat and settled; returns them."""
    result = await conn.execute(
        text(
            "WITH ended AS (DELETE FROM subscriptions s WHERE s.ending_at IS NOT NULL "
            "AND NOT EXISTS (SELECT 1 FROM copy_positions c "
            "WHERE c.subscription_id = s.id AND c.qty <> 0) "
            "AND NOT EXISTS (SELECT 1 FROM legs l WHERE l.subscription_id = s.id "
            "AND l.status = ANY(CAST(:open AS text[]))) "
            "RETURNING s.id, s.follower_id, s.master_id, s.account_id), "
            "positions AS (DELETE FROM copy_positions "
            "WHERE subscription_id IN (SELECT id FROM ended)) "
            "SELECT id, follower_id, master_id, account_id FROM ended"
        ),
        {"open": _NOT_FINAL},
    )
    return fetch_all_as(result, EndedSubscription)
