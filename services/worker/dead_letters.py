"""Dead letters: an order whose message will not be delivered again is recorded as such (once,
with its reason), counted, and shown by GET /v1/orders/{id}; the sweeper retries it later.

Two ways a message runs out: a worker fails on the last delivery a configured limit allows
(it records the order itself), or the worker died on it (JetStream's MAX_DELIVERIES advisory,
heard by any replicator, names the message)."""

from __future__ import annotations

import json
import logging

from nats.aio.msg import Msg
from nats.js.client import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.messages import ORDERS_STREAM, OrderMessage, ShardMessage
from services.infra.db.repositories.recovery import mark_dead_lettered
from services.infra.metrics import DEAD_LETTERED

log = logging.getLogger("copytrade.replicator")


class DeadLetters:
    def __init__(self, engine: AsyncEngine, js: JetStreamContext) -> None:
        self.engine = engine
        self.js = js

    async def on_max_deliveries(self, advisory: Msg) -> None:
        """A message ran out of attempts without an answer (its worker died on the last one)."""
        try:
            event = json.loads(advisory.data)
            stream, seq = str(event["stream"]), int(event["stream_seq"])
            stored = await self.js.get_msg(stream, seq)
            if stream == ORDERS_STREAM:
                order_id = OrderMessage.model_validate_json(stored.data or b"").order_id
            else:
                order_id = ShardMessage.model_validate_json(stored.data or b"").order.order_id
            await self.record(
                order_id, stream, f"max_deliver exceeded ({event.get('deliveries')} deliveries)"
            )
        except Exception:
            log.exception("could not dead-letter the message of advisory %r", advisory.data)

    async def record(self, order_id: str, stream: str, reason: str) -> bool:
        """Record the order as dead-lettered (once); False when it could not be recorded."""
        try:
            async with self.engine.begin() as conn:
                fresh = await mark_dead_lettered(conn, order_id, reason)
        except Exception:
            log.exception("could not record order %s as dead-lettered", order_id)
            return False
        if fresh:
            DEAD_LETTERED.labels(stream).inc()
            log.error("order %s dead-lettered (%s): %s", order_id, stream, reason)
        return True
