"""What a replicator does with a message it could not finish: never let JetStream drop it.

The consumers have no delivery limit (`max_deliver` -1 by default); a failed message is nak'd
with capped exponential backoff and jitter, so a PostgreSQL outage of any length loses no order
and costs no hot loop. An order message still failing after `dead_letter_after` deliveries is
parked in PostgreSQL (`master_orders.dead_lettered_at`) and terminated; the sweeper republishes
it once the dependencies are back. While PostgreSQL itself is down the order cannot be parked,
so its message simply keeps being redelivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

from nats.aio.msg import Msg
from sqlalchemy.ext.asyncio import AsyncEngine

from replication.retry import backoff_s
from services.infra.db.repositories.recovery import mark_dead_lettered
from services.infra.metrics import DEAD_LETTERED

log = logging.getLogger("copytrade.redelivery")


class HoldForSnapshot(Exception):
    """The master's position could not be read: neither the master's order nor its copies go
    out yet (copy-or-hold: hold); the message is redelivered until the copy deadline."""


async def retry_later(
    message: Msg | None,
    engine: AsyncEngine,
    order_id: str | None,
    dead_letter_after: int,
    reason: str,
) -> None:
    """Nak `message` with backoff; park its order (an order message) past `dead_letter_after`,
    recording `reason` (GET /v1/orders/{id} shows it dead-lettered until the sweeper retries)."""
    if message is None:
        return
    delivered = int(message.metadata.num_delivered or 1)
    if order_id is not None and dead_letter_after > 0 and delivered >= dead_letter_after:
        try:
            async with engine.begin() as conn:
                parked = await mark_dead_lettered(
                    conn, order_id, f"{delivered} deliveries: {reason}"[:500]
                )
        except asyncio.CancelledError:
            raise
        except Exception:
            parked = False  # the database is down too: keep redelivering
        if parked:
            DEAD_LETTERED.labels(message.metadata.stream).inc()
            log.error("order %s dead-lettered after %d deliveries", order_id, delivered)
            with contextlib.suppress(Exception):
                await message.term()
            return
    with contextlib.suppress(Exception):
        await message.nak(delay=backoff_s(delivered, random.random()))
