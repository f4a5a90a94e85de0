"""Work that would otherwise stay stuck: master orders dead-lettered after their message ran
out of delivery attempts, and failed legs put back in doubt by a retry (exactly once: one
guarded UPDATE along replication.state.RETRIES, never a move a broker's answer can take)."""

from __future__ import annotations

from decimal import Decimal

from replication.state import retry_moves
from services.infra.db.repositories.base import (
    Connection,
    columns,
    fetch_all_as,
    fetch_one_as,
    text,
)
from services.infra.db.repositories.legs import Leg, SettledLeg
from services.infra.db.repositories.orders import MasterOrder
from services.infra.db.repositories.risk import LedgerEntry, add_to_ledger

_LEG_COLUMNS = columns(Leg)
_SETTLED_COLUMNS = columns(SettledLeg, "legs")
_ORDER_COLUMNS = columns(MasterOrder)
_RETRY_MOVES = sorted(f"{current.value}>{target.value}" for current, target in retry_moves())
_RETRY_TO = sorted({target.value for _, target in retry_moves()})
assert len(_RETRY_TO) == 1, "a retry has one destination"


async def mark_dead_lettered(conn: Connection, order_id: str, reason: str) -> bool:
    """Record that the order's message will not be delivered again; True the first time."""
    result = await conn.execute(
        text(
            "UPDATE master_orders SET dead_lettered_at = now(), dead_letter_reason = :r "
            "WHERE id = :id AND dead_lettered_at IS NULL RETURNING id"
        ),
        {"id": order_id, "r": reason},
    )
    return result.first() is not None


async def leg_for(conn: Connection, leg_id: str, follower_id: str | None) -> Leg | None:
    """A follower leg as its owner (or, with follower_id None, an admin) may see it."""
    return fetch_one_as(
        await conn.execute(
            text(
                f"SELECT {_LEG_COLUMNS} FROM legs WHERE id = :id AND action <> 'master' "
                "AND (CAST(:f AS uuid) IS NULL OR follower_id = CAST(:f AS uuid))"
            ),
            {"id": leg_id, "f": follower_id},
        ),
        Leg,
    )


async def retry_failed_leg(
    conn: Connection, leg_id: str, follower_id: str | None
) -> SettledLeg | None:
    """Put a failed follower leg back in doubt (lease expired, attempts reset) and reserve
    again the ledger its failure gave back. One guarded UPDATE: of two concurrent retries one
    moves the leg, the other finds it no longer failed (None)."""
    row = fetch_one_as(
        await conn.execute(
            text(
                "UPDATE legs SET status = :to, reason = 'retry_requested', attempts = 0, "
                "lease_expires_at = now() - interval '1 millisecond', settled_at = NULL, "
                "updated_at = now(), details = jsonb_set(jsonb_set(COALESCE(details, "
                "'{}'::jsonb), '{retried}', to_jsonb(COALESCE(legs.reason, ''))), "
                "'{retried_at}', to_jsonb(now())) "
                "WHERE id = :id AND action <> 'master' "
                "AND (CAST(:f AS uuid) IS NULL OR follower_id = CAST(:f AS uuid)) "
                "AND legs.status || '>' || :to = ANY(CAST(:moves AS text[])) "
                f"RETURNING {_SETTLED_COLUMNS}"
            ),
            {"id": leg_id, "f": follower_id, "to": _RETRY_TO[0], "moves": _RETRY_MOVES},
        ),
        SettledLeg,
    )
    if row is None or row.subscription_id is None or row.qty is None:
        return row
    unfilled = row.qty - (row.filled_qty or Decimal(0))
    if unfilled > 0:
        signed = unfilled if row.side == "buy" else -unfilled
        await add_to_ledger(
            conn,
            [LedgerEntry(str(row.subscription_id), str(row.account_id), row.symbol, signed)],
        )
    return row


# What an admin looks at (GET /v1/admin/legs, GET /v1/admin/orders/dead-lettered): the newest
# first, bounded. In-doubt legs are served by legs_in_doubt_idx; failed legs are rare and read
# by admins only (no index of their own).
IN_DOUBT = ("submitting", "unknown", "retrying")


async def stuck_legs(conn: Connection, statuses: list[str], limit: int) -> list[Leg]:
    """Follower legs in one of `statuses`, most recently changed first."""
    return fetch_all_as(
        await conn.execute(
            text(
                f"SELECT {_LEG_COLUMNS} FROM legs WHERE action <> 'master' "
                "AND status = ANY(CAST(:s AS text[])) ORDER BY updated_at DESC, id LIMIT :limit"
            ),
            {"s": statuses, "limit": limit},
        ),
        Leg,
    )


async def dead_lettered_orders(conn: Connection, limit: int) -> list[tuple[MasterOrder, str]]:
    """Master orders parked after their deliveries ran out, newest first, with the reason."""
    rows = await conn.execute(
        text(
            f"SELECT {_ORDER_COLUMNS}, dead_letter_reason FROM master_orders "
            "WHERE dead_lettered_at IS NOT NULL ORDER BY dead_lettered_at DESC, id LIMIT :limit"
        ),
        {"limit": limit},
    )
    return [(MasterOrder(*row[:-1]), row[-1] or "") for row in rows.all()]
