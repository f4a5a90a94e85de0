"""A dead-lettered order tells its master by webhook: a real consumer runs out of deliveries on
a real JetStream server, the monitor hears the advisory, reads the order back and queues an
`order.dead_lettered` event (once per order) on the webhooks' stream."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import nats
from nats.js.api import AckPolicy, ConsumerConfig
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.common import OrderType, Side, TimeInForce
from schemas.messages import ORDERS_STREAM, OrderMessage, order_subject
from services.infra import bus, monitor, webhook_bus
from tests.helpers import eventually


async def test_a_dead_lettered_order_is_announced_to_its_master(
    servers: dict[str, str], engine: AsyncEngine
) -> None:
    nc = await nats.connect(servers["nats"])
    watcher = None
    try:
        js = nc.jetstream()
        await bus.ensure_stream(js)
        await webhook_bus.ensure_stream(js)
        master_id = str(uuid.uuid4())
        order = OrderMessage(
            order_id=str(uuid.uuid4()),
            master_id=master_id,
            account_id=str(uuid.uuid4()),
            client_order_id="dead-1",
            symbol="AAPL",
            side=Side.BUY,
            qty=Decimal(3),
            type=OrderType.MARKET,
            time_in_force=TimeInForce.DAY,
            created_at=datetime.now(UTC),
        )
        watcher = asyncio.create_task(monitor.run(nc, js, engine, interval_s=60))
        await nc.flush()
        await bus.publish_order(js, order)
        durable = "dead-" + uuid.uuid4().hex[:8]
        await js.add_consumer(
            ORDERS_STREAM,
            ConsumerConfig(
                durable_name=durable,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=0.5,
                max_deliver=2,
                filter_subject=order_subject(master_id),
            ),
        )
        psub = await js.pull_subscribe_bind(durable=durable, stream=ORDERS_STREAM)

        async def announced() -> dict[str, object] | None:
            with contextlib.suppress(Exception):
                for message in await psub.fetch(1, timeout=0.2):
                    await message.nak()  # a handler that always fails
            try:
                last = await js.get_last_msg(webhook_bus.STREAM, webhook_bus.EVENTS_SUBJECT)
            except Exception:
                return None
            event: dict[str, object] = json.loads(last.data or b"{}")
            return event if event.get("user_id") == master_id else None

        event = await eventually(announced, timeout_s=20, message="no order.dead_lettered")
        assert event["type"] == "order.dead_lettered"
        assert event["event_id"] == webhook_bus.event_id("order.dead_lettered", order.order_id)
        data = event["data"]
        assert isinstance(data, dict)
        assert data["order_id"] == order.order_id and data["stream"] == ORDERS_STREAM
        assert data["symbol"] == "AAPL" and data["qty"] == "3"
        await js.delete_consumer(ORDERS_STREAM, durable)
    finally:
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        await nc.close()
