"""The webhooks' durable queue on JetStream: stream WEBHOOKS with two subjects — events from
producers (fanned out into deliveries by the notifier) and one message per delivery (retried
with backoff by `nak(delay)` until delivered or out of attempts)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.client import JetStreamContext
from nats.js.errors import ServiceUnavailableError

from schemas.webhooks import DeliveryMessage, WebhookEvent, WebhookEventType
from services.infra.bus import ensure_one

STREAM = "WEBHOOKS"
EVENTS_SUBJECT = "webhooks.events"
DELIVERIES_SUBJECT = "webhooks.deliveries"
EVENTS_CONSUMER = "notifier-events"
DELIVERIES_CONSUMER = "notifier-deliveries"
FAILED_SUBJECT = "copytrade.webhooks.failed"  # core NATS: a delivery ran out of attempts
DUPLICATE_WINDOW_S = 120.0
_EVENTS = uuid.UUID("0b6a8f8e-5d1c-4d4e-9f55-3c1f2f0c7a15")

log = logging.getLogger("copytrade.notifications")


def stream_config(replicas: int = 1) -> StreamConfig:
    return StreamConfig(
        name=STREAM,
        subjects=[EVENTS_SUBJECT, DELIVERIES_SUBJECT],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        max_age=7 * 24 * 3600.0,
        duplicate_window=DUPLICATE_WINDOW_S,
        num_replicas=replicas,
    )


async def ensure_stream(js: JetStreamContext, replicas: int = 1, wait_s: float = 30.0) -> None:
    """Create or update the stream; a cluster still electing its leaders is waited for."""
    config = stream_config(replicas)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            # Only read when already as configured: the API's NATS user may not change streams.
            await ensure_one(js, config)
            return
        except (NatsTimeoutError, ServiceUnavailableError, NoRespondersError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.25)


async def ensure_consumers(js: JetStreamContext, ack_wait_s: float) -> None:
    pairs = ((EVENTS_CONSUMER, EVENTS_SUBJECT), (DELIVERIES_CONSUMER, DELIVERIES_SUBJECT))
    for name, subject in pairs:
        await js.add_consumer(
            STREAM,
            ConsumerConfig(
                durable_name=name,
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=ack_wait_s,
                max_deliver=-1,  # the attempts counter in PostgreSQL decides when to stop
                max_ack_pending=1000,
                filter_subject=subject,
            ),
        )


async def publish_event(js: JetStreamContext, event: WebhookEvent, timeout_s: float = 2.0) -> None:
    """Nats-Msg-Id = event id: announcing the same event twice inside the window is a no-op
    (and outside it the deliveries' unique (webhook, event) keeps it one delivery)."""
    await js.publish(
        EVENTS_SUBJECT,
        event.model_dump_json().encode(),
        timeout=timeout_s,
        stream=STREAM,
        headers={"Nats-Msg-Id": f"event:{event.event_id}"},
    )


async def publish_delivery(js: JetStreamContext, delivery_id: str) -> None:
    await js.publish(
        DELIVERIES_SUBJECT,
        DeliveryMessage(delivery_id=delivery_id).model_dump_json().encode(),
        stream=STREAM,
        headers={"Nats-Msg-Id": f"delivery:{delivery_id}"},
    )


def event_id(*parts: object) -> str:
    """A deterministic id: the same happening announced twice is one event."""
    return str(uuid.uuid5(_EVENTS, "|".join(str(p) for p in parts)))


async def notify(
    js: JetStreamContext,
    user_id: str,
    kind: WebhookEventType,
    data: dict[str, Any],
    ident: str | None = None,
) -> None:
    """Queue one event for `user_id`'s webhooks; never fails its caller (a lost notification
    is logged, the trading path goes on)."""
    event = WebhookEvent(
        event_id=ident or str(uuid.uuid4()),
        type=kind,
        user_id=user_id,
        occurred_at=datetime.now(UTC),
        data=data,
    )
    try:
        await publish_event(js, event)
    except Exception:
        log.warning("notification %s for %s not queued", kind.value, user_id, exc_info=True)
