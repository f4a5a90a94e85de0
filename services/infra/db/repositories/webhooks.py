"""Webhooks, their deliveries (one per event and webhook) and every attempt of each."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from services.infra.db.repositories.base import (
    Connection,
    columns,
    fetch_all_as,
    fetch_one_as,
    text,
)


@dataclass(frozen=True, slots=True)
class Webhook:
    id: UUID
    user_id: UUID
    url: str
    events: list[str]
    secret: bytes  # sealed (services.infra.crypto), bound to the webhook id
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Delivery:
    id: UUID
    webhook_id: UUID
    event_id: UUID
    event: str
    payload: dict[str, Any]
    status: str
    attempts: int
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class Attempt:
    delivery_id: UUID
    attempt: int
    status_code: int | None
    error: str | None
    duration_ms: float
    at: datetime


@dataclass(frozen=True, slots=True)
class DeliveryTarget:
    """A delivery claimed for one more attempt, with where it goes."""

    id: UUID
    webhook_id: UUID
    event: str
    payload: dict[str, Any]
    attempts: int  # including the claimed one
    url: str
    secret: bytes


_WEBHOOK = columns(Webhook)
_DELIVERY = columns(Delivery)
_ATTEMPT = columns(Attempt)


async def insert_webhook(
    conn: Connection, webhook_id: str, user_id: str, url: str, events: list[str], secret: bytes
) -> Webhook:
    row = fetch_one_as(
        await conn.execute(
            text(
                "INSERT INTO webhooks (id, user_id, url, events, secret) "
                "VALUES (:id, :u, :url, CAST(:events AS text[]), :secret) "
                f"RETURNING {_WEBHOOK}"
            ),
            {"id": webhook_id, "u": user_id, "url": url, "events": events, "secret": secret},
        ),
        Webhook,
    )
    assert row is not None
    return row


async def webhooks_of(conn: Connection, user_id: str) -> list[Webhook]:
    return fetch_all_as(
        await conn.execute(
            text(f"SELECT {_WEBHOOK} FROM webhooks WHERE user_id = :u ORDER BY created_at, id"),
            {"u": user_id},
        ),
        Webhook,
    )


async def delete_webhook(conn: Connection, webhook_id: str, user_id: str) -> bool:
    result = await conn.execute(
        text("DELETE FROM webhooks WHERE id = :id AND user_id = :u RETURNING id"),
        {"id": webhook_id, "u": user_id},
    )
    return result.first() is not None


async def add_deliveries(
    conn: Connection, user_id: str, event: str, event_id: str, payload: dict[str, Any]
) -> list[str]:
    """One delivery per webhook of the user that listens to `event` (again: no new rows);
    returns the ids of every delivery of this event that is still pending."""
    await conn.execute(
        text(
            "INSERT INTO webhook_deliveries (id, webhook_id, event_id, event, payload) "
            "SELECT gen_random_uuid(), w.id, :e, :event, CAST(:p AS jsonb) FROM webhooks w "
            "WHERE w.user_id = :u AND :event = ANY(w.events) "
            "ON CONFLICT (webhook_id, event_id) DO NOTHING"
        ),
        {"u": user_id, "event": event, "e": event_id, "p": json.dumps(payload)},
    )
    rows = await conn.execute(
        text("SELECT id FROM webhook_deliveries WHERE event_id = :e AND status = 'pending'"),
        {"e": event_id},
    )
    return [str(row[0]) for row in rows.all()]


async def claim_attempt(conn: Connection, delivery_id: str) -> DeliveryTarget | None:
    """Count one more attempt of a pending delivery (None: delivered, failed or gone)."""
    return fetch_one_as(
        await conn.execute(
            text(
                "UPDATE webhook_deliveries d SET attempts = d.attempts + 1 FROM webhooks w "
                "WHERE d.id = :id AND d.status = 'pending' AND w.id = d.webhook_id "
                "RETURNING d.id, d.webhook_id, d.event, d.payload, d.attempts, w.url, w.secret"
            ),
            {"id": delivery_id},
        ),
        DeliveryTarget,
    )


async def record_attempt(
    conn: Connection,
    target: DeliveryTarget,
    status_code: int | None,
    error: str | None,
    duration_ms: float,
    final_status: str | None,
) -> None:
    """Record the attempt; `final_status` (delivered | failed) ends the delivery."""
    await conn.execute(
        text(
            "INSERT INTO webhook_attempts (delivery_id, attempt, status_code, error, duration_ms) "
            "VALUES (:d, :n, :code, :error, :ms) ON CONFLICT DO NOTHING"
        ),
        {
            "d": str(target.id),
            "n": target.attempts,
            "code": status_code,
            "error": error,
            "ms": duration_ms,
        },
    )
    if final_status is not None:
        await conn.execute(
            text(
                "UPDATE webhook_deliveries SET status = :s, finished_at = now() "
                "WHERE id = :d AND status = 'pending'"
            ),
            {"s": final_status, "d": str(target.id)},
        )


async def deliveries_of(
    conn: Connection, webhook_id: str, user_id: str, limit: int
) -> list[tuple[Delivery, list[Attempt]]]:
    """A webhook's newest deliveries with their attempts (only the owner's)."""
    deliveries = fetch_all_as(
        await conn.execute(
            text(
                f"SELECT {_DELIVERY} FROM webhook_deliveries WHERE webhook_id = :w AND EXISTS "
                "(SELECT 1 FROM webhooks WHERE id = :w AND user_id = :u) "
                "ORDER BY created_at DESC, id LIMIT :limit"
            ),
            {"w": webhook_id, "u": user_id, "limit": limit},
        ),
        Delivery,
    )
    attempts = await _attempts(conn, [str(d.id) for d in deliveries])
    return [(d, [a for a in attempts if a.delivery_id == d.id]) for d in deliveries]


async def _attempts(conn: Connection, delivery_ids: Sequence[str]) -> list[Attempt]:
    return fetch_all_as(
        await conn.execute(
            text(
                f"SELECT {_ATTEMPT} FROM webhook_attempts "
                "WHERE delivery_id = ANY(CAST(:ids AS uuid[])) ORDER BY delivery_id, attempt"
            ),
            {"ids": list(delivery_ids)},
        ),
        Attempt,
    )
