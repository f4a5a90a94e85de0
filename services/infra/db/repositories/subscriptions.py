"""Subscriptions: a follower account's copy settings for one master, and the planner's view of
them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.infra.db.repositories.base import (
    Conflict,
    Connection,
    Row,
    columns,
    fetch_all_as,
    fetch_one_as,
    text,
)


@dataclass(frozen=True, slots=True)
class Subscription:
    id: UUID
    follower_id: UUID
    master_id: UUID
    account_id: UUID
    sizing: dict[str, Any]
    caps: dict[str, Any]
    filters: dict[str, Any]
    paused: bool
    created_at: datetime
    updated_at: datetime
    ending_at: datetime | None  # ended by the follower; its copies still follow exits
    on_master_rejected: str = "close"


@dataclass(frozen=True, slots=True)
class Target:
    """A subscription as the planner and the sender see it: copy settings, the account's halt,
    its broker and sealed credentials; the versions let parsed settings be cached."""

    subscription_id: UUID
    follower_id: UUID
    account_id: UUID
    sizing: dict[str, Any]
    caps: dict[str, Any]
    filters: dict[str, Any]
    paused: bool
    account_halted: bool
    broker: str
    credentials: bytes
    subscription_version: datetime
    account_version: datetime
    ending: bool = False


_SUBSCRIPTION_COLUMNS = columns(Subscription)
_TARGET_SELECT = (
    "SELECT s.id AS subscription_id, s.follower_id, s.account_id, s.sizing, s.caps, "
    "s.filters, s.paused, a.halted AS account_halted, a.broker, a.credentials, "
    "s.updated_at AS subscription_version, a.updated_at AS account_version, "
    "s.ending_at IS NOT NULL AS ending "
    "FROM subscriptions s JOIN accounts a ON a.id = s.account_id "
)


async def insert_subscription(conn: AsyncConnection, values: Row) -> Subscription:
    try:
        async with conn.begin_nested():
            result = await conn.execute(
                text(
                    "INSERT INTO subscriptions (id, follower_id, master_id, account_id, sizing, "
                    "caps, filters, paused, on_master_rejected) VALUES (:id, :follower_id, "
                    ":master_id, :account_id, CAST(:sizing AS jsonb), CAST(:caps AS jsonb), "
                    "CAST(:filters AS jsonb), :paused, :on_master_rejected) "
                    f"RETURNING {_SUBSCRIPTION_COLUMNS}"
                ),
                {
                    "on_master_rejected": "close",
                    **values,
                    **{k: json.dumps(values[k]) for k in ("sizing", "caps", "filters")},
                },
            )
    except IntegrityError as exc:
        raise Conflict("subscription_exists") from exc
    row = fetch_one_as(result, Subscription)
    assert row is not None
    return row


async def subscriptions_of_follower(conn: Connection, follower_id: str) -> list[Subscription]:
    return fetch_all_as(
        await conn.execute(
            text(
                f"SELECT {_SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE follower_id = :f "
                "ORDER BY created_at"
            ),
            {"f": follower_id},
        ),
        Subscription,
    )


async def update_subscription(
    conn: Connection, subscription_id: str, follower_id: str, changes: Row
) -> Subscription | None:
    assignments = []
    params: Row = {"id": subscription_id, "f": follower_id}
    for column in ("sizing", "caps", "filters"):
        if column in changes:
            assignments.append(f"{column} = CAST(:{column} AS jsonb)")
            params[column] = json.dumps(changes[column])
    for column in ("paused", "on_master_rejected"):
        if column in changes:
            assignments.append(f"{column} = :{column}")
            params[column] = changes[column]
    assignments.append("updated_at = now()")
    return fetch_one_as(
        await conn.execute(
            text(
                f"UPDATE subscriptions SET {', '.join(assignments)} "
                f"WHERE id = :id AND follower_id = :f RETURNING {_SUBSCRIPTION_COLUMNS}"
            ),
            params,
        ),
        Subscription,
    )


async def remove_subscription(conn: Connection, subscription_id: str, follower_id: str) -> bool:
    result = await conn.execute(
        text("DELETE FROM subscriptions WHERE id = :id AND follower_id = :f RETURNING id"),
        {"id": subscription_id, "f": follower_id},
    )
    return result.first() is not None


async def load_targets(
    conn: Connection, master_id: str, account_ids: Sequence[str] | None = None
) -> list[Target]:
    """Every subscription to a master (or those of `account_ids`) with what the planner and the
    sender need."""
    only = "" if account_ids is None else " AND s.account_id = ANY(CAST(:ids AS uuid[]))"
    return fetch_all_as(
        await conn.execute(
            text(f"{_TARGET_SELECT}WHERE s.master_id = :m{only}"),
            {"m": master_id, "ids": list(account_ids or [])},
        ),
        Target,
    )


async def subscriptions_by_ids(
    conn: Connection, subscription_ids: Sequence[str]
) -> dict[str, Target]:
    rows = fetch_all_as(
        await conn.execute(
            text(f"{_TARGET_SELECT}WHERE s.id = ANY(CAST(:ids AS uuid[]))"),
            {"ids": list(subscription_ids)},
        ),
        Target,
    )
    return {str(row.subscription_id): row for row in rows}
