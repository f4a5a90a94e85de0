"""Pulling JetStream messages into bounded concurrent handlers (the replicator's two queues).

A pull loop fetches only when it has room (`limit` handlers in flight), so a worker never
holds messages it cannot start; an optional `ready` event pauses fetching (the replicator takes
no shards while it records an order's first shard). A malformed message is terminated, never
redelivered forever. A message that fails on its last delivery attempt (JetStream's
max_deliver) is the caller's to dead-letter (`out_of_attempts`); one whose worker died on that
attempt is announced by JetStream's MAX_DELIVERIES advisory (`max_deliveries_subject`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from pydantic import BaseModel, ValidationError

log = logging.getLogger("copytrade.consuming")
Handler = Callable[[Msg], Coroutine[Any, Any, None]]
M = TypeVar("M", bound=BaseModel)


async def pull(
    psub: Any,
    handler: Handler,
    stop: asyncio.Event,
    limit: int,
    batch: int,
    in_flight: set[asyncio.Task[None]],
    ready: asyncio.Event | None = None,
) -> None:
    """Fetch and start handlers until `stop`; every task is also added to `in_flight`."""
    mine: set[asyncio.Task[None]] = set()
    while not stop.is_set():
        if ready is not None and not ready.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await ready.wait()
            continue
        room = limit - len(mine)
        if room <= 0:
            await asyncio.wait(mine, return_when=asyncio.FIRST_COMPLETED)
            continue
        try:
            messages = await psub.fetch(batch=min(room, batch), timeout=0.5)
        except (NatsTimeoutError, TimeoutError):
            continue
        except Exception:
            log.exception("fetch failed; retrying")
            await asyncio.sleep(0.5)
            continue
        for message in messages:
            task = asyncio.create_task(handler(message))
            for tasks in (mine, in_flight):
                tasks.add(task)
                task.add_done_callback(tasks.discard)


def out_of_attempts(message: Msg, max_deliver: int) -> bool:
    """This delivery is the message's last (and it is not acked): if it fails, JetStream never
    delivers it again, so the work must be recorded as dead-lettered instead of dropped."""
    if max_deliver <= 0 or message.is_acked:
        return False
    return bool(message.metadata.num_delivered >= max_deliver)


def max_deliveries_subject(stream: str, consumer: str) -> str:
    """JetStream's advisory for messages of `consumer` that ran out of delivery attempts
    (payload: JSON with `stream`, `consumer`, `stream_seq`, `deliveries`)."""
    return f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.{consumer}"


async def parse(kind: type[M], message: Msg) -> M | None:
    """The message as `kind`, or None after terminating a malformed one."""
    try:
        return kind.model_validate_json(message.data)
    except ValidationError:
        log.error("dropping malformed %s (seq %s)", kind.__name__, message.metadata.sequence.stream)
        await message.term()
        return None
