"""A master order's compensation (issue 18): the master's own order was refused, or ended
(canceled, expired) after filling only part of its quantity. Claimed with a lease, done exactly
once (master_orders.compensated_at); the follower legs it works on, with their subscription's
on_master_rejected and broker.

How the master's order ended is its master leg for an order placed through the API, and what
the poller recorded (master_orders.broker_end_*) for one the master placed directly at its
broker: one source for the claim, the sweeper's pass and the goal."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from services.infra.db.repositories.base import Connection, columns, fetch_all_as, text
from services.infra.db.repositories.legs import ClaimedLeg

REFUSED = ("rejected", "failed")
SHORT = ("canceled", "expired")  # ended short of its quantity: the fraction it filled
# How the master's own order ended, for the master_orders row `o`: (status, qty, filled_qty).
_MASTER_END = (
    "SELECT l.status, l.qty, l.filled_qty FROM legs l "
    "WHERE l.order_id = o.id AND l.action = 'master' "
    "UNION ALL SELECT o.broker_end_status, o.qty, o.broker_end_filled_qty "
    "WHERE o.broker_end_status IS NOT NULL"
)


def _needed(status: str, qty: str, filled: str) -> str:
    """The ends that call for a compensation: refused, or ended short of its quantity."""
    return (
        f"({status} = ANY(CAST(:refused AS text[])) OR ({status} = ANY(CAST(:short AS text[])) "
        f"AND COALESCE({filled}, 0) < {qty}))"
    )


_ENDS = {"refused": list(REFUSED), "short": list(SHORT)}


@dataclass(frozen=True, slots=True)
class CompensatedLeg(ClaimedLeg):
    on_master_rejected: str


@dataclass(frozen=True, slots=True)
class MasterFill:
    """How the master's own leg ended: what the copies are brought back to."""

    status: str
    qty: Decimal | None
    filled_qty: Decimal | None


async def master_fill(conn: Connection, order_id: str) -> MasterFill | None:
    row = (
        await conn.execute(
            text(
                "SELECT m.status, m.qty, m.filled_qty FROM master_orders o, "
                f"LATERAL ({_MASTER_END}) AS m(status, qty, filled_qty) WHERE o.id = :o LIMIT 1"
            ),
            {"o": order_id},
        )
    ).first()
    return None if row is None else MasterFill(str(row[0]), row[1], row[2])


async def master_leg_status(conn: Connection, order_id: str) -> str | None:
    value = (
        await conn.execute(
            text("SELECT status FROM legs WHERE order_id = :o AND action = 'master'"),
            {"o": order_id},
        )
    ).scalar_one_or_none()
    return None if value is None else str(value)


async def claim_compensation(conn: Connection, order_id: str, lease_s: float) -> bool:
    """Take an order whose master's order was refused (or ended short of its quantity), unless
    it is done or someone holds it."""
    claimed = await conn.execute(
        text(
            "UPDATE master_orders o SET compensation_claimed_at = now() WHERE o.id = :o "
            "AND o.compensated_at IS NULL AND (o.compensation_claimed_at IS NULL OR "
            "o.compensation_claimed_at < now() - make_interval(secs => :lease)) "
            # every shard recorded: no copy of this order can appear after the compensation
            "AND cardinality(o.shards_recorded) >= jsonb_array_length(o.plan -> 'shards') "
            f"AND EXISTS (SELECT 1 FROM ({_MASTER_END}) AS m(status, qty, filled_qty) "
            f"WHERE {_needed('m.status', 'm.qty', 'm.filled_qty')}) RETURNING o.id"
        ),
        {"o": order_id, "lease": lease_s, **_ENDS},
    )
    return claimed.first() is not None


async def refused_uncompensated(conn: Connection, limit: int) -> list[str]:
    """Orders whose master's order was refused (or ended short of its quantity) and whose
    compensation is not done (sweeper): API orders by their master leg, orders placed directly
    at the broker by the end the poller recorded."""
    rows = await conn.execute(
        text(
            "(SELECT o.id FROM master_orders o JOIN legs l ON l.order_id = o.id "
            "AND l.action = 'master' WHERE o.compensated_at IS NULL "
            f"AND {_needed('l.status', 'l.qty', 'l.filled_qty')}) UNION ALL "
            "(SELECT o.id FROM master_orders o WHERE o.broker_end_status IS NOT NULL "
            "AND o.compensated_at IS NULL AND "
            f"{_needed('o.broker_end_status', 'o.qty', 'o.broker_end_filled_qty')}) LIMIT :n"
        ),
        {"n": limit, **_ENDS},
    )
    return [str(row[0]) for row in rows]


async def compensation_done(conn: Connection, order_id: str) -> None:
    await conn.execute(
        text("UPDATE master_orders SET compensated_at = now() WHERE id = :o"), {"o": order_id}
    )


async def follower_legs(conn: Connection, order_id: str) -> list[CompensatedLeg]:
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
