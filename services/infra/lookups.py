"""Market-data look-ups shared by every plan in a process (issue 16).

Instrument rules and last prices are the same for every follower of an order, so they are
asked of the broker once per key and `ttl_s`, whoever needs them: concurrent callers of a key
wait for the one request in flight instead of sending their own, and only answers are kept
(a failure is not cached, the next caller asks again). These calls spend the broker host's
budget, never one account's (services/infra/ratelimit.py, `for_account=False`).

A few lines rather than a dependency: keys are (broker, symbol), values are awaited once, and
expiry is by monotonic time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class SharedLookups(Generic[V]):
    """A per-process, TTL'd, in-flight-deduplicated cache of look-ups."""

    def __init__(
        self, ttl_s: float, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._clock = clock
        self._values: dict[Hashable, tuple[float, V]] = {}
        self._in_flight: dict[Hashable, asyncio.Future[V]] = {}
        self.fetches = 0  # look-ups actually sent (for tests and benchmarks)

    def peek(self, key: Hashable) -> V | None:
        cached = self._values.get(key)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        return None

    def put(self, key: Hashable, value: V) -> None:
        if len(self._values) >= self._max_entries:
            now = self._clock()
            self._values = {k: v for k, v in self._values.items() if v[0] > now}
            if len(self._values) >= self._max_entries:
                self._values.clear()
        self._values[key] = (self._clock() + self._ttl_s, value)

    async def get(self, key: Hashable, fetch: Callable[[], Awaitable[V]]) -> V:
        """The value of `key`: cached, else the answer of the request already in flight, else
        `fetch()`'s (raises what `fetch` raises, to every caller waiting on it)."""
        cached = self.peek(key)
        if cached is not None:
            return cached
        waiting = self._in_flight.get(key)
        if waiting is not None:
            try:
                return await asyncio.shield(waiting)
            except asyncio.CancelledError:
                if waiting.cancelled() and not _cancelling():
                    return await self.get(key, fetch)  # its owner was cancelled, not us
                raise
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            self.fetches += 1
            value = await fetch()
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(exc)
                future.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        finally:
            self._in_flight.pop(key, None)
        self.put(key, value)
        future.set_result(value)
        return value


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
