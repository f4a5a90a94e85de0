"""Leg and order events on core NATS, for dashboards (subjects in schemas.messages)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from nats.aio.client import Client as NATS
from pydantic import TypeAdapter

from schemas.messages import LEG_EVENTS_SUBJECT, LegEvent, OrderEvent, order_event_subject
from services.infra.db.repositories.legs import SettledLeg
from services.infra.db.repositories.orders import OrderProgress


def leg_event(row: SettledLeg, order_created_at: datetime | None) -> LegEvent:
    updated_at: datetime = row.updated_at
    latency = None
    if order_created_at is not None:
        latency = round((updated_at - order_created_at).total_seconds() * 1000, 3)
    return LegEvent(
        leg_id=str(row.id),
        order_id=str(row.order_id),
        master_id=str(row.master_id),
        follower_id=str(row.follower_id),
        account_id=str(row.account_id),
        symbol=row.symbol,
        side=row.side,
        qty=row.qty,
        status=row.status,
        reason=row.reason,
        client_order_id=row.client_order_id,
        broker_order_id=row.broker_order_id,
        latency_ms=latency,
        updated_at=updated_at,
    )


_LEG_EVENTS: TypeAdapter[list[LegEvent]] = TypeAdapter(list[LegEvent])
# Events per message: ~500 bytes each, well under NATS's default 1 MB payload limit.
LEG_EVENTS_PER_MESSAGE = 200


async def publish_leg_events(
    nc: NATS, rows: Iterable[SettledLeg], order_created_at: datetime | None = None
) -> None:
    """One message per up to LEG_EVENTS_PER_MESSAGE legs (a JSON array on LEG_EVENTS_SUBJECT),
    not one per leg: the gateway routes each event to its follower's sockets."""
    events = [leg_event(row, order_created_at) for row in rows]
    for start in range(0, len(events), LEG_EVENTS_PER_MESSAGE):
        chunk = events[start : start + LEG_EVENTS_PER_MESSAGE]
        await nc.publish(LEG_EVENTS_SUBJECT, _LEG_EVENTS.dump_json(chunk))


async def publish_order_event(
    nc: NATS, order_id: str, master_id: str, progress: OrderProgress
) -> None:
    event = OrderEvent(
        order_id=order_id,
        master_id=master_id,
        status=progress.status,
        legs_total=progress.total,
        by_status=progress.by_status,
        fanout_ms=progress.fanout_ms,
        updated_at=datetime.now(UTC),
    )
    await nc.publish(order_event_subject(master_id), event.model_dump_json().encode())
