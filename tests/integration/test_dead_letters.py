"""The JetStream side of dead letters, against a real server: the last delivery is recognised,
and a message that runs out of attempts without an answer is announced on the advisory subject
the replicator listens to, naming a stream sequence that still holds the order's message."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import nats
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig

from schemas.common import OrderType, Side, TimeInForce
from schemas.messages import ORDERS_STREAM, OrderMessage
from services.infra import bus
from services.worker.consuming import max_deliveries_subject, out_of_attempts


async def test_the_last_delivery_and_the_max_deliveries_advisory(servers: dict[str, str]) -> None:
    nc = await nats.connect(servers["nats"])
    try:
        js = nc.jetstream()
        await bus.ensure_stream(js)
        durable, master = "dlq-" + uuid.uuid4().hex[:8], uuid.uuid4().hex
        await js.add_consumer(
            ORDERS_STREAM,
            ConsumerConfig(
                durable_name=durable, ack_wait=0.5, max_deliver=2, filter_subject=f"orders.{master}"
            ),
        )
        advisories: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def on_advisory(msg: Msg) -> None:
            await advisories.put(json.loads(msg.data))

        await nc.subscribe(max_deliveries_subject(ORDERS_STREAM, durable), cb=on_advisory)
        message = OrderMessage(
            order_id=str(uuid.uuid4()),
            master_id=master,
            account_id="a",
            client_order_id="c",
            symbol="AAPL",
            side=Side.BUY,
            qty=Decimal("1"),
            type=OrderType.MARKET,
            time_in_force=TimeInForce.DAY,
            created_at=datetime.now(UTC),
        )
        seq = await bus.publish_order(js, message)
        psub = await js.pull_subscribe_bind(durable=durable, stream=ORDERS_STREAM)
        [first] = await psub.fetch(batch=1, timeout=2)
        assert not out_of_attempts(first, 2)  # never acked: delivered again after ack_wait
        [last] = await psub.fetch(batch=1, timeout=5)
        assert out_of_attempts(last, 2) and not out_of_attempts(last, 0)
        # The worker "dies" on its last attempt (no ack, no term): JetStream announces it when
        # the next pull finds the message out of attempts (the replicator is always pulling).
        with contextlib.suppress(nats.errors.TimeoutError):
            assert await psub.fetch(batch=1, timeout=2) == []  # never delivered a third time
        event = await asyncio.wait_for(advisories.get(), timeout=10)
        assert event["stream"] == ORDERS_STREAM and event["consumer"] == durable
        assert int(event["stream_seq"]) == seq and int(event["deliveries"]) >= 2
        stored = await js.get_msg(ORDERS_STREAM, seq)
        assert OrderMessage.model_validate_json(stored.data or b"") == message
        await js.delete_consumer(ORDERS_STREAM, durable)
    finally:
        await nc.close()
