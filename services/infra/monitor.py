"""Gauges no single request updates: consumer lag, the sweeper's backlog, dead letters.

Run by the sweeper (one per deployment is enough; several only repeat the same reading):
every `interval_s` it reads both durable consumers' pending counts and the legs in doubt past
their lease, and it counts JetStream's max-deliveries advisories, the stream's dead letters
(a message past `max_deliver` stays in the stream, and the alert says so); each dead-lettered
order is read back and its master told by webhook (`order.dead_lettered`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.client import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.messages import ORDERS_STREAM, SHARDS_STREAM, OrderMessage, ShardMessage
from schemas.webhooks import WebhookEventType
from services.infra import webhook_bus
from services.infra.bus import REPLICATOR_CONSUMER, SHARD_CONSUMER
from services.infra.db.repositories.leases import in_doubt_backlog
from services.infra.metrics import (
    CONSUMER_ACK_PENDING,
    CONSUMER_PENDING,
    MAX_DELIVERIES_SEEN,
    SWEEPER_BACKLOG,
    SWEEPER_BACKLOG_OLDEST,
)

log = logging.getLogger(__name__)

CONSUMERS = ((ORDERS_STREAM, REPLICATOR_CONSUMER), (SHARDS_STREAM, SHARD_CONSUMER))
MAX_DELIVERIES_ADVISORY = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>"


async def sample(js: JetStreamContext, engine: AsyncEngine) -> None:
    for stream, consumer in CONSUMERS:
        try:
            info = await js.consumer_info(stream, consumer)
        except Exception as exc:
            log.debug("consumer %s/%s unreadable: %s", stream, consumer, exc)
            continue
        CONSUMER_PENDING.labels(stream, consumer).set(info.num_pending or 0)
        CONSUMER_ACK_PENDING.labels(stream, consumer).set(info.num_ack_pending or 0)
    async with engine.connect() as conn:
        legs, oldest = await in_doubt_backlog(conn)
    SWEEPER_BACKLOG.set(legs)
    SWEEPER_BACKLOG_OLDEST.set(oldest)


async def _on_dead_letter(js: JetStreamContext, msg: Msg) -> None:
    try:
        advisory = json.loads(msg.data)
        stream = str(advisory.get("stream", "unknown"))
    except ValueError:
        stream = "unknown"
        advisory = {}
    MAX_DELIVERIES_SEEN.labels(stream).inc()
    log.error(
        "message past max_deliver: stream %s seq %s consumer %s",
        stream,
        advisory.get("stream_seq"),
        advisory.get("consumer"),
    )
    await _tell_the_master(js, stream, advisory.get("stream_seq"))


async def _tell_the_master(js: JetStreamContext, stream: str, seq: Any) -> None:
    """`order.dead_lettered` to the master of a dead-lettered order (or shard of one), read back
    by its stream sequence; one event per order."""
    if stream not in (ORDERS_STREAM, SHARDS_STREAM) or seq is None:
        return
    try:
        data = (await js.get_msg(stream, int(seq))).data or b""
        order = (
            OrderMessage.model_validate_json(data)
            if stream == ORDERS_STREAM
            else ShardMessage.model_validate_json(data).order
        )
    except Exception:
        log.warning("dead letter %s/%s not read back", stream, seq, exc_info=True)
        return
    details = order.model_dump(
        mode="json", include={"order_id", "account_id", "client_order_id", "symbol", "side", "qty"}
    )
    ident = webhook_bus.event_id("order.dead_lettered", order.order_id)
    kind = WebhookEventType.ORDER_DEAD_LETTERED
    await webhook_bus.notify(js, order.master_id, kind, {**details, "stream": stream}, ident)


async def run(nc: NATS, js: JetStreamContext, engine: AsyncEngine, interval_s: float) -> None:
    """Until cancelled."""

    async def on_dead_letter(msg: Msg) -> None:
        await _on_dead_letter(js, msg)

    subscription = await nc.subscribe(MAX_DELIVERIES_ADVISORY, cb=on_dead_letter)
    try:
        while True:
            try:
                await sample(js, engine)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("monitor sample failed", exc_info=True)
            await asyncio.sleep(interval_s)
    finally:
        await subscription.unsubscribe()
