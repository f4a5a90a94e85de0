"""Master orders that exhausted their deliveries: parked with `dead_lettered_at`, retried by the
sweeper once their dependencies are back (the column is shared with the API's view of them)."""

from __future__ import annotations

from services.infra.db.repositories.base import Connection, text


async def due_dead_letters(conn: Connection, older_than_s: float, limit: int) -> list[str]:
    """Orders parked for at least `older_than_s`, oldest first (locked: one sweeper each)."""
    rows = await conn.execute(
        text(
            "SELECT id FROM master_orders WHERE dead_lettered_at IS NOT NULL "
            "AND dead_lettered_at < now() - make_interval(secs => :age) "
            "ORDER BY dead_lettered_at LIMIT :limit FOR UPDATE SKIP LOCKED"
        ),
        {"age": older_than_s, "limit": limit},
    )
    return [str(row[0]) for row in rows.all()]


async def revive(conn: Connection, order_ids: list[str]) -> None:
    await conn.execute(
        text(
            "UPDATE master_orders SET dead_lettered_at = NULL, dead_letter_reason = NULL "
            "WHERE id = ANY(CAST(:ids AS uuid[]))"
        ),
        {"ids": order_ids},
    )
