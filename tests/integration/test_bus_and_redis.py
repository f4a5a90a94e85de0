"""JetStream stream/consumer and Redis against real servers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import nats
import redis.asyncio as aioredis
from nats.js.api import ConsumerConfig

from schemas.common import OrderType, Side, TimeInForce
from schemas.messages import ORDERS_STREAM, OrderMessage
from services.infra import bus
from services.infra.positions import MasterPositions
from tests.helpers import eventually


def _message(master_id: str) -> OrderMessage:
    return OrderMessage(
        order_id=str(uuid.uuid4()),
        master_id=master_id,
        account_id="a",
        client_order_id="c",
        symbol="AAPL",
        side=Side.BUY,
        qty=Decimal("1.5"),
        type=OrderType.MARKET,
        time_in_force=TimeInForce.DAY,
        created_at=datetime.now(UTC),
    )


async def test_stream_dedups_by_order_id_and_redelivers_unacked(servers: dict[str, str]) -> None:
    nc = await nats.connect(servers["nats"])
    try:
        js = nc.jetstream()
        await bus.ensure_stream(js)
        await bus.ensure_stream(js)  # idempotent
        info = await js.stream_info(ORDERS_STREAM)
        assert info.config.duplicate_window == bus.DUPLICATE_WINDOW_S
        assert str(getattr(info.config.storage, "value", info.config.storage)) == "file"
        durable = "test-" + uuid.uuid4().hex[:8]
        master = uuid.uuid4().hex
        await js.add_consumer(
            ORDERS_STREAM,
            ConsumerConfig(
                durable_name=durable, ack_wait=1, max_deliver=5, filter_subject=f"orders.{master}"
            ),
        )
        message = _message(master)
        first = await bus.publish_order(js, message)
        second = await bus.publish_order(js, message)  # same Nats-Msg-Id: not stored twice
        assert first == second
        psub = await js.pull_subscribe_bind(durable=durable, stream=ORDERS_STREAM)
        [got] = await psub.fetch(batch=10, timeout=2)
        assert OrderMessage.model_validate_json(got.data) == message
        # Not acked: JetStream delivers it again after ack_wait (1 s); the fetch waits for it.
        [again] = await psub.fetch(batch=10, timeout=5)
        assert again.metadata.num_delivered == 2
        await again.ack_sync()
        consumer = await js.consumer_info(ORDERS_STREAM, durable)
        assert consumer.num_ack_pending == 0 and consumer.num_pending == 0
        await js.delete_consumer(ORDERS_STREAM, durable)
    finally:
        await nc.close()


async def test_redis_counters_expire(servers: dict[str, str]) -> None:
    client = aioredis.from_url(servers["redis"])
    try:
        key = "login:fail:test-" + uuid.uuid4().hex
        pipe = client.pipeline()
        pipe.incr(key)
        pipe.expire(key, 1)
        assert await pipe.execute() == [1, True]
        assert int(await client.get(key)) == 1

        async def expired() -> bool:
            return await client.get(key) is None

        await eventually(expired, timeout_s=5, message="the counter did not expire")
    finally:
        await client.aclose()


async def test_master_positions_cache_refuses_answers_older_than_a_master_leg(
    servers: dict[str, str],
) -> None:
    redis = aioredis.Redis.from_url(servers["redis"])
    account = str(uuid.uuid4())
    try:
        assert await MasterPositions(redis, 0).peek(account) is None  # max age 0: off
        cache = MasterPositions(redis, 5)
        generation, cached = await cache.peek(account)
        assert cached is None
        assert await cache.store(account, generation, {"AAPL": Decimal("-2.5")})
        assert await cache.peek(account) == (generation, {"AAPL": Decimal("-2.5")})

        # A broker read in flight while a master leg is recorded must not be kept.
        before, _ = await cache.peek(account)
        await cache.invalidate(account)
        assert (await cache.peek(account))[1] is None
        assert not await cache.store(account, before, {"AAPL": Decimal("7")})
        assert (await cache.peek(account))[1] is None
        after, _ = await cache.peek(account)
        assert after != before and await cache.store(account, after, {"AAPL": Decimal("7")})

        short = MasterPositions(redis, 0.05)
        generation, _ = await short.peek(account)
        assert await short.store(account, generation, {"MSFT": Decimal(1)})

        async def expired() -> bool:
            return (await short.peek(account))[1] is None

        await eventually(expired, timeout_s=5, message="the entry did not expire")  # entries expire
    finally:
        await redis.aclose()
