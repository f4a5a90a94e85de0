"""Legs under a lease: the sweeper's claims (in doubt, cancels, replaces, stale open orders),
the sender's lease renewals and the resend mark. A claim takes legs atomically (SKIP LOCKED), so
concurrent sweepers never work on the same leg; statuses are sets of replication.state."""

from __future__ import annotations

from collections.abc import Sequence

from replication.state import OPEN_AT_BROKER, TO_SWEEP, LegStatus, predecessors
from services.infra.db.repositories.base import (
    Connection,
    Row,
    columns,
    fetch_all_as,
    fetch_one,
    text,
)
from services.infra.db.repositories.legs import ClaimedLeg, Leg

_OPEN_AT_BROKER = sorted(s.value for s in OPEN_AT_BROKER)
_IN_DOUBT = sorted(s.value for s in TO_SWEEP)  # in doubt, or waiting to be sent again
_TO_SUBMITTING = sorted(s.value for s in predecessors(LegStatus.SUBMITTING))
_CLAIMED = (
    columns(Leg, "legs") + ", legs.last_sent_at, "
    "(SELECT broker FROM accounts a WHERE a.id = legs.account_id) AS broker, "
    "(SELECT credentials FROM accounts a WHERE a.id = legs.account_id) AS credentials"
)


async def _claim(
    conn: Connection, candidates: str, params: Row, lease_s: float, also_set: str = ""
) -> list[ClaimedLeg]:
    """Take the legs `candidates` selects (a locking SELECT of ids, SKIP LOCKED) under a lease,
    atomically: concurrent sweepers never take the same leg."""
    return fetch_all_as(
        await conn.execute(
            text(
                "UPDATE legs SET lease_expires_at = now() + make_interval(secs => :lease)"
                f"{also_set} WHERE id IN ({candidates}) RETURNING {_CLAIMED}"
            ),
            {**params, "lease": lease_s},
        ),
        ClaimedLeg,
    )


async def claim_replaces(conn: Connection, limit: int, lease_s: float) -> list[ClaimedLeg]:
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


async def claim_stale_open(
    conn: Connection, limit: int, older_than_s: float, lease_s: float
) -> list[ClaimedLeg]:
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


async def claim_cancels(conn: Connection, limit: int, lease_s: float) -> list[ClaimedLeg]:
    """Open legs of orders whose master asked to cancel, and copies a kill switch asked to
    cancel (flatten)."""
    return await _claim(
        conn,
        "SELECT l.id FROM legs l JOIN master_orders o ON o.id = l.order_id "
        "WHERE (o.cancel_requested_at IS NOT NULL OR l.cancel_requested_at IS NOT NULL) "
        "AND l.status = ANY(CAST(:open_at_broker AS text[])) "
        "AND (l.lease_expires_at IS NULL OR l.lease_expires_at < now()) "
        "LIMIT :limit FOR UPDATE OF l SKIP LOCKED",
        {"limit": limit, "open_at_broker": _OPEN_AT_BROKER},
        lease_s,
        ", updated_at = now()",
    )


async def claim_in_doubt(conn: Connection, limit: int, lease_s: float) -> list[ClaimedLeg]:
    """Legs whose lease ran out while submitting, unknown or retrying (each claim counts an
    attempt)."""
    return await _claim(
        conn,
        "SELECT id FROM legs WHERE status = ANY(CAST(:in_doubt AS text[])) "
        "AND lease_expires_at < now() ORDER BY lease_expires_at LIMIT :limit "
        "FOR UPDATE SKIP LOCKED",
        {"limit": limit, "in_doubt": _IN_DOUBT},
        lease_s,
        ", attempts = attempts + 1, updated_at = now()",
    )


async def renew_leases(conn: Connection, leg_ids: Sequence[str], lease_s: float) -> int:
    """Extend the lease of legs a live worker is still sending, so no sweeper steps in."""
    result = await conn.execute(
        text(
            "UPDATE legs SET lease_expires_at = now() + make_interval(secs => :lease) "
            "WHERE id = ANY(CAST(:ids AS uuid[])) AND status = :submitting"
        ),
        {"ids": list(leg_ids), "lease": lease_s, "submitting": LegStatus.SUBMITTING.value},
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def mark_sent(conn: Connection, leg_id: str, lease_s: float) -> None:
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


async def in_doubt_backlog(conn: Connection) -> tuple[int, float]:
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
