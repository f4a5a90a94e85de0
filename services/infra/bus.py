"""NATS wiring: the ORDERS stream, the durable pull consumer, publishing master orders."""

from __future__ import annotations

import asyncio
import logging
import time

import nats
from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError, ServiceUnavailableError

from schemas.messages import (
    ORDERS_STREAM,
    ORDERS_SUBJECT_PREFIX,
    SHARDS_STREAM,
    SHARDS_SUBJECT,
    OrderMessage,
    ShardMessage,
    order_subject,
    shard_message_id,
)

log = logging.getLogger(__name__)

REPLICATOR_CONSUMER = "replicator"
SHARD_CONSUMER = "replicator-shards"
DUPLICATE_WINDOW_S = 300.0
STREAM_MAX_AGE_S = 7 * 24 * 3600.0


def servers(url: str) -> list[str]:
    """`nats://a:4222,nats://b:4222` → both URLs: the client tries each and follows the cluster."""
    return [part.strip() for part in url.split(",") if part.strip()]


async def connect(
    url: str, name: str, user: str | None = None, password: str | None = None
) -> NATS:
    """Connect to one server or a cluster as `user` (a service role, services/infra/nats_auth.py;
    credentials in the URL win); reconnects forever (a leader change is a blip)."""
    return await nats.connect(
        servers=servers(url),
        name=name,
        user=user,
        password=password,
        connect_timeout=5,
        reconnect_time_wait=0.5,
        max_reconnect_attempts=-1,
        allow_reconnect=True,
    )


async def close(nc: NATS) -> None:
    """Flush what we published, then close. (drain() waits out pull subscriptions: too slow.)"""
    try:
        await nc.flush(timeout=2)
    except Exception:
        log.warning("flush before close failed", exc_info=True)
    await nc.close()


def stream_config(replicas: int = 1) -> StreamConfig:
    return StreamConfig(
        name=ORDERS_STREAM,
        subjects=[f"{ORDERS_SUBJECT_PREFIX}.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=STREAM_MAX_AGE_S,
        duplicate_window=DUPLICATE_WINDOW_S,
        num_replicas=replicas,
    )


def shards_stream_config(replicas: int = 1) -> StreamConfig:
    """A work queue: a shard message is gone once a worker acked it (its legs are recorded)."""
    return StreamConfig(
        name=SHARDS_STREAM,
        subjects=[SHARDS_SUBJECT],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        max_age=STREAM_MAX_AGE_S,
        duplicate_window=DUPLICATE_WINDOW_S,
        num_replicas=replicas,
    )


def shard_consumer_config(ack_wait_s: float, max_deliver: int) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=SHARD_CONSUMER,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ack_wait_s,
        max_deliver=max_deliver,
        max_ack_pending=1000,
        filter_subject=SHARDS_SUBJECT,
    )


def consumer_config(ack_wait_s: float, max_deliver: int) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=REPLICATOR_CONSUMER,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ack_wait_s,
        max_deliver=max_deliver,
        # One in-flight message is one master order fanned out in process; bounded on purpose.
        max_ack_pending=1000,
        filter_subject=f"{ORDERS_SUBJECT_PREFIX}.>",
    )


async def ensure_stream(js: JetStreamContext, replicas: int = 1, wait_s: float = 30.0) -> None:
    """Create or update both streams with `replicas` copies (R3 on a cluster: any one node may
    die without losing an acknowledged publish). Consumers inherit the stream's replicas.
    A cluster that is still electing its leaders answers 503 or times out: retried until
    `wait_s` has passed."""
    deadline = time.monotonic() + wait_s
    for config in (stream_config(replicas), shards_stream_config(replicas)):
        while True:
            try:
                await ensure_one(js, config)
                break
            except (NatsTimeoutError, ServiceUnavailableError, NoRespondersError) as exc:
                if time.monotonic() > deadline:
                    raise
                log.info("JetStream not ready (%s); retrying", type(exc).__name__)
                await asyncio.sleep(0.25)


async def ensure_one(js: JetStreamContext, config: StreamConfig) -> None:
    """Create, or update when it differs: a stream already as configured is only read (the
    API's NATS user may read the streams' info but not change them)."""
    try:
        info = await js.stream_info(config.name or "")
        if not _same(info.config, config):
            await js.update_stream(config)
    except NotFoundError:
        await js.add_stream(config)


def _same(current: StreamConfig, wanted: StreamConfig) -> bool:
    keys = ("subjects", "retention", "storage", "max_age", "duplicate_window", "num_replicas")
    return all(getattr(current, key) == getattr(wanted, key) for key in keys)


async def ensure_consumer(js: JetStreamContext, ack_wait_s: float, max_deliver: int) -> None:
    await js.add_consumer(ORDERS_STREAM, consumer_config(ack_wait_s, max_deliver))
    await js.add_consumer(SHARDS_STREAM, shard_consumer_config(ack_wait_s, max_deliver))


async def publish_order(
    js: JetStreamContext,
    message: OrderMessage,
    timeout_s: float = 5.0,
    message_id: str | None = None,
) -> int:
    """Publish with Nats-Msg-Id = order id: a republish inside the window is a no-op
    (`message_id`: a deliberate second message, e.g. a dead-lettered order's retry)."""
    ack = await js.publish(
        order_subject(message.master_id),
        message.model_dump_json().encode(),
        timeout=timeout_s,
        stream=ORDERS_STREAM,
        headers={"Nats-Msg-Id": message_id or message.order_id},
    )
    return int(ack.seq)


async def publish_shard(
    js: JetStreamContext, message: ShardMessage, timeout_s: float = 5.0
) -> None:
    """Publish with Nats-Msg-Id = order:shard: re-dispatching a shard inside the window is a no-op
    (and outside it harmless: recording a shard twice inserts nothing the second time)."""
    await js.publish(
        SHARDS_SUBJECT,
        message.model_dump_json().encode(),
        timeout=timeout_s,
        stream=SHARDS_STREAM,
        headers={"Nats-Msg-Id": shard_message_id(message.order.order_id, message.shard)},
    )
