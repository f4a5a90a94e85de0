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
from datetime import UTC, datetime

from nats.aio.msg import Msg
from sqlalchemy.ext.asyncio import AsyncEngine

from replication.retry import BACKOFF_CAP_S, DEFAULT_COPY_DEADLINE_S, backoff_s
from schemas.messages import OrderMessage
from services.infra.db.repositories.recovery import mark_dead_lettered
from services.infra.metrics import DEAD_LETTERED

log = logging.getLogger("copytrade.redelivery")


# A held order is tried again at most this long after the last try: each try is one position
# read of the master's account (refused unsent while its 429 gate is closed), and a dependency
# back within the copy window should cost its copies seconds, not a 30 s backoff.
HOLD_BACKOFF_CAP_S = 5.0


class HoldForSnapshot(Exception):
    """The master's position could not be read: neither the master's order nor its copies go
    out yet (copy-or-hold: hold); the message is redelivered until the copy deadline."""


def past_copy_window(order: OrderMessage) -> bool:
    """Held orders wait for the master's snapshot at most the default copy window; then the plan
    records every leg skipped (`master_position_unavailable`), the master's own included."""
    age = (datetime.now(UTC) - order.created_at).total_seconds()
    return age >= DEFAULT_COPY_DEADLINE_S


async def retry_later(
    message: Msg | None,
    engine: AsyncEngine,
    order_id: str | None,
    dead_letter_after: int,
    reason: str,
    cap_s: float = BACKOFF_CAP_S,
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
        await message.nak(delay=backoff_s(delivered, random.random(), cap_s=cap_s))
