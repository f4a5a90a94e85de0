"""Subscriptions: a follower account's copy settings for one master, and the planner's view of
them."""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.infra.db.repositories.base import Conflict, Row, fetch_all, fetch_one

_SUBSCRIPTION_COLUMNS = (
    "id, follower_id, master_id, account_id, sizing, caps, filters, paused, created_at, updated_at"
)


async def insert_subscription(conn: AsyncConnection, values: Row) -> Row:
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
    row = fetch_one(result)
    assert row is not None
    return row


async def subscriptions_of_follower(conn: AsyncConnection, follower_id: str) -> list[Row]:
    return fetch_all(
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
    return fetch_one(
        await conn.execute(
            text(
                f"UPDATE subscriptions SET {', '.join(assignments)} "
                f"WHERE id = :id AND follower_id = :f RETURNING {_SUBSCRIPTION_COLUMNS}"
            ),
            params,
        )
    )


async def remove_subscription(
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
    return fetch_all(
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


async def subscriptions_by_ids(
    conn: AsyncConnection, subscription_ids: Sequence[str]
) -> dict[str, Row]:
    rows = fetch_all(
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
