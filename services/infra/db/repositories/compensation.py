"""A master order's compensation (issue 18): its master leg was refused, or canceled after filling
only part of its quantity. Claimed with a lease, done exactly once (master_orders.compensated_at);
the follower legs it works on, with their subscription's on_master_rejected and broker."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncConnection

from services.infra.db.repositories.base import columns, fetch_all_as, text
from services.infra.db.repositories.legs import ClaimedLeg

_REFUSED = ("rejected", "failed")
# The master leg's ends that call for a compensation: refused, or canceled short of its quantity.
_NEEDED = (
    "(l.status = ANY(CAST(:refused AS text[])) "
    "OR (l.status = 'canceled' AND COALESCE(l.filled_qty, 0) < l.qty))"
)


@dataclass(frozen=True, slots=True)
class CompensatedLeg(ClaimedLeg):
    on_master_rejected: str


@dataclass(frozen=True, slots=True)
class MasterFill:
    """How the master's own leg ended: what the copies are brought back to."""

    status: str
    qty: Decimal | None
    filled_qty: Decimal | None


async def master_fill(conn: AsyncConnection, order_id: str) -> MasterFill | None:
    row = (
        await conn.execute(
            text(
                "SELECT status, qty, filled_qty FROM legs WHERE order_id = :o AND action = 'master'"
            ),
            {"o": order_id},
        )
    ).first()
    return None if row is None else MasterFill(str(row[0]), row[1], row[2])


async def master_leg_status(conn: AsyncConnection, order_id: str) -> str | None:
    value = (
        await conn.execute(
            text("SELECT status FROM legs WHERE order_id = :o AND action = 'master'"),
            {"o": order_id},
        )
    ).scalar_one_or_none()
    return None if value is None else str(value)


async def claim_compensation(conn: AsyncConnection, order_id: str, lease_s: float) -> bool:
    """Take an order whose master leg was refused (or canceled short of its quantity), unless it
    is done or someone holds it."""
    claimed = await conn.execute(
        text(
            "UPDATE master_orders o SET compensation_claimed_at = now() WHERE o.id = :o "
            "AND o.compensated_at IS NULL AND (o.compensation_claimed_at IS NULL OR "
            "o.compensation_claimed_at < now() - make_interval(secs => :lease)) "
            # every shard recorded: no copy of this order can appear after the compensation
            "AND cardinality(o.shards_recorded) >= jsonb_array_length(o.plan -> 'shards') "
            "AND EXISTS "
            "(SELECT 1 FROM legs l WHERE l.order_id = o.id AND l.action = 'master' "
            f"AND {_NEEDED}) RETURNING o.id"
        ),
        {"o": order_id, "lease": lease_s, "refused": list(_REFUSED)},
    )
    return claimed.first() is not None


async def refused_uncompensated(conn: AsyncConnection, limit: int) -> list[str]:
    """Orders whose master leg was refused (or canceled short of its quantity) and whose
    compensation is not done (sweeper)."""
    rows = await conn.execute(
        text(
            "SELECT o.id FROM master_orders o JOIN legs l ON l.order_id = o.id "
            "AND l.action = 'master' WHERE o.compensated_at IS NULL "
            f"AND {_NEEDED} LIMIT :n"
        ),
        {"refused": list(_REFUSED), "n": limit},
    )
    return [str(row[0]) for row in rows]


async def compensation_done(conn: AsyncConnection, order_id: str) -> None:
    await conn.execute(
        text("UPDATE master_orders SET compensated_at = now() WHERE id = :o"), {"o": order_id}
    )


async def follower_legs(conn: AsyncConnection, order_id: str) -> list[CompensatedLeg]:
    """Every follower leg of the order (copies and unwinds), with what talking to its broker
    and the subscription's choice need."""
    leg_columns = columns(ClaimedLeg, "l").replace("l.broker,", "a.broker,")
    leg_columns = leg_columns.replace("l.credentials", "a.credentials")
    return fetch_all_as(
        await conn.execute(
            text(
                f"SELECT {leg_columns}, COALESCE(s.on_master_rejected, 'close') "
                "AS on_master_rejected FROM legs l JOIN accounts a ON a.id = l.account_id "
                "LEFT JOIN subscriptions s ON s.id = l.subscription_id "
                "WHERE l.order_id = :o AND l.action <> 'master' ORDER BY l.id"
            ),
            {"o": order_id},
        ),
        CompensatedLeg,
    )


def in_doubt(legs: Sequence[ClaimedLeg]) -> bool:
    """Copies whose end is not known yet: a `retrying` copy may still be placed and fill."""
    return any(leg.status in ("planned", "submitting", "unknown", "retrying") for leg in legs)
