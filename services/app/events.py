"""Leg and order events on core NATS, for dashboards (subjects in schemas.messages)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from nats.aio.client import Client as NATS

from schemas.messages import LegEvent, OrderEvent, leg_event_subject, order_event_subject
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


async def publish_leg_events(
    nc: NATS, rows: Iterable[SettledLeg], order_created_at: datetime | None = None
) -> None:
    for row in rows:
        event = leg_event(row, order_created_at)
        await nc.publish(leg_event_subject(event.follower_id), event.model_dump_json().encode())


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
