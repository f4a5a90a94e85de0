"""An order's plan and its shards: the first delivery's plan is the order's plan; each shard is
counted once when its legs are recorded, and the order is planned when all of them are."""

from __future__ import annotations

from sqlalchemy import text

from services.infra.db.repositories.base import Connection, fetch_one


async def store_plan(
    conn: Connection, order_id: str, plan: str, completes: tuple[int, int] | None = None
) -> tuple[bool, set[int]]:
    """Store this plan unless one is stored already (the first one wins); returns whether the
    stored plan is this one (equal as JSON: a redelivery that planned the same is no loser) and
    the shards recorded. The stored plan does not travel back (it is ~40 bytes per follower).

    `completes` = (shard, shards): the same statement also counts that shard as recorded (a
    shard recorded in one batch, e.g. an order without followers: one round trip less), only
    when the plan is ours; a loser's transaction is rolled back anyway."""
    if completes is None:
        statement = (
            "UPDATE master_orders SET plan = COALESCE(plan, CAST(:plan AS jsonb)) "
            "WHERE id = :id RETURNING plan = CAST(:plan AS jsonb) AS ours, shards_recorded"
        )
        params: dict[str, object] = {"id": order_id, "plan": plan}
    else:
        ours = "COALESCE(plan, CAST(:plan AS jsonb)) = CAST(:plan AS jsonb)"
        statement = (
            f"UPDATE master_orders SET plan = COALESCE(plan, CAST(:plan AS jsonb)), "
            f"shards_recorded = CASE WHEN {ours} THEN {_RECORDED} ELSE shards_recorded END, "
            f"planned_at = CASE WHEN {ours} THEN {_PLANNED_AT} ELSE planned_at END "
            "WHERE id = :id RETURNING plan = CAST(:plan AS jsonb) AS ours, shards_recorded"
        )
        params = {"id": order_id, "plan": plan, "shard": completes[0], "shards": completes[1]}
    row = fetch_one(await conn.execute(text(statement), params))
    if row is None:
        raise LookupError(f"master order {order_id} does not exist")
    return bool(row["ours"]), set(row["shards_recorded"] or [])


# The order's recorded shards with :shard counted once, and its planned_at once all :shards
# are (both read the row as it was before the UPDATE, as SET expressions do).
_HAS_SHARD = "CAST(:shard AS integer) = ANY(shards_recorded)"
_RECORDED = (
    f"CASE WHEN {_HAS_SHARD} THEN shards_recorded "
    "ELSE array_append(shards_recorded, CAST(:shard AS integer)) END"
)
_PLANNED_AT = (
    "CASE WHEN planned_at IS NULL AND cardinality(shards_recorded) "
    f"+ CASE WHEN {_HAS_SHARD} THEN 0 ELSE 1 END >= CAST(:shards AS integer) "
    "THEN now() ELSE planned_at END"
)


async def shard_recorded(conn: Connection, order_id: str, shard: int, shards: int) -> None:
    """Count a shard as recorded (idempotent); the order is planned once all of them are."""
    await conn.execute(
        text(
            f"UPDATE master_orders SET shards_recorded = {_RECORDED}, "
            f"planned_at = {_PLANNED_AT} WHERE id = :id"
        ),
        {"id": order_id, "shard": shard, "shards": shards},
    )
