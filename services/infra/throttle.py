"""Attempt counters in Redis for sign-in and registration throttles.

Each attempt is counted (INCR, in one MULTI with the window's EXPIRE) before it is evaluated,
so parallel attempts cannot all slip past a check-then-increment race. Past the limit the
caller is told to come back later with a backoff that doubles with each further attempt (capped
at the window) rather than being locked out: counters are per (email, client address) and per
address, so an attacker elsewhere cannot lock the owner of an email out.

Without Redis (down, restarting) the throttle fails open to a local limiter: the same counters
and windows in this process's memory (logged once per outage), so sign-ins keep working and are
still limited per process; Redis's counters take over again when it answers.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from services.infra.ratelimit import BUCKET_SCRIPT

log = logging.getLogger("copytrade.throttle")

MAX_BACKOFF_EXPONENT = 12


def key_part(text: str) -> str:
    """A fixed-size, log-safe key component (emails and addresses are never stored raw)."""
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def is_loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def backoff_s(count: int, limit: int, window_s: int) -> int:
    """Seconds to wait after the `count`-th attempt against a limit of `limit`."""
    over = min(count - limit, MAX_BACKOFF_EXPONENT)
    wait: int = 2 ** max(over, 0)
    return max(1, min(window_s, wait))


async def count_attempts(
    redis: aioredis.Redis, counters: list[tuple[str, int]], window_s: int
) -> int | None:
    """Count one attempt on each (key, limit) with limit > 0; the longest backoff when any is
    over its limit (seconds for Retry-After), else None."""
    active = [(key, limit) for key, limit in counters if limit > 0]
    if not active:
        return None
    try:
        pipe = redis.pipeline(transaction=True)
        for key, _ in active:
            pipe.incr(key)
            pipe.expire(key, window_s, nx=True)
        results = await pipe.execute()
        LOCAL.recovered()
        counts = [int(count) for count in results[::2]]
    except (RedisError, OSError) as exc:
        LOCAL.failing(exc)
        counts = [LOCAL.incr(key, window_s) for key, _ in active]
    waits = [
        backoff_s(count, limit, window_s)
        for (_, limit), count in zip(active, counts, strict=True)
        if count > limit
    ]
    return max(waits) if waits else None


async def forget(redis: aioredis.Redis, key: str) -> None:
    LOCAL.forget(key)
    try:
        await redis.delete(key)
    except (RedisError, OSError) as exc:
        LOCAL.failing(exc)


class LocalCounters:
    """The fallback: fixed-window counters in this process (bounded: expired ones go first)."""

    MAX_KEYS = 100_000

    def __init__(self) -> None:
        self._counts: dict[str, tuple[int, float]] = {}  # key → (count, window end)
        self.degraded = False

    def incr(self, key: str, window_s: int) -> int:
        now = time.monotonic()
        count, end = self._counts.get(key, (0, now + window_s))
        if end <= now:
            count, end = 0, now + window_s
        if len(self._counts) >= self.MAX_KEYS:
            self._counts = {k: v for k, v in self._counts.items() if v[1] > now}
        self._counts[key] = (count + 1, end)
        return count + 1

    def forget(self, key: str) -> None:
        self._counts.pop(key, None)

    def failing(self, exc: Exception) -> None:
        if not self.degraded:
            log.warning("Redis unavailable (%s): throttling with local counters", exc)
        self.degraded = True

    def recovered(self) -> None:
        if self.degraded:
            log.warning("Redis is back: throttling with its counters again")
        self.degraded = False


LOCAL = LocalCounters()


class TokenBuckets:
    """Per-key token buckets (a burst, refilled at a steady rate) shared by every API process:
    one Lua script takes tokens atomically on Redis's own clock (services.infra.ratelimit's).
    Without Redis they fail open to buckets in this process's memory, like the counters.

    A process takes a key's tokens a few at a time (a lease: a hundredth of the burst, at most
    LEASE_MAX, used within LEASE_S) and spends them without asking Redis again, so a client
    writing at full speed costs one round trip per lease, not per request. Every token spent
    was taken from the shared bucket first, and what a process does not spend within LEASE_S is
    lost, not returned; since a lease may be spent up to LEASE_S after it was taken, a short
    window can see the burst exceeded by at most one lease per API process (20 of 2,000 by
    default). Near the limit it takes one token at a time."""

    MAX_KEYS = 100_000
    LEASE_MAX = 20
    LEASE_S = 1.0

    def __init__(self, redis: aioredis.Redis, per_second: float, burst: int, prefix: str) -> None:
        self._script = redis.register_script(BUCKET_SCRIPT)
        self._per_ms = per_second / 1000
        self._burst = max(1, burst)
        self._prefix = prefix
        self._local: dict[str, tuple[float, float]] = {}  # key → (tokens, monotonic ms)
        self._lease = max(1, min(self.LEASE_MAX, self._burst // 100))
        self._leased: dict[str, tuple[int, float]] = {}  # key → (tokens left, until monotonic)
        self.round_trips = 0  # scripts sent (for tests and benchmarks)

    async def take(self, key: str) -> float | None:
        """Take one token for `key`; None when taken, else seconds until one is there."""
        left, until = self._leased.get(key, (0, 0.0))
        if left > 0 and time.monotonic() < until:
            self._leased[key] = (left - 1, until)
            return None
        try:
            taken, answer = self._lease, await self._run(key, self._lease)
            if answer < 0 and taken > 1:  # fewer than a lease left: one at a time
                taken, answer = 1, await self._run(key, 1)
            LOCAL.recovered()
        except (RedisError, OSError) as exc:
            LOCAL.failing(exc)
            return self._take_locally(key)
        if answer < 0:
            return -answer / 1000
        if taken > 1:
            if len(self._leased) >= self.MAX_KEYS:
                self._leased.clear()  # losing leases is the strict direction
            self._leased[key] = (taken - 1, time.monotonic() + self.LEASE_S)
        return None

    async def _run(self, key: str, count: int) -> int:
        self.round_trips += 1
        return int(
            await self._script(
                keys=[f"{self._prefix}:{key}"], args=[self._burst, self._per_ms, count, 0]
            )
        )

    def _take_locally(self, key: str) -> float | None:
        now = time.monotonic() * 1000
        tokens, then = self._local.get(key, (float(self._burst), now))
        tokens = min(float(self._burst), tokens + (now - then) * self._per_ms)
        if len(self._local) >= self.MAX_KEYS:
            self._local.clear()  # a full refill is the fail-open direction
        if tokens < 1:
            self._local[key] = (tokens, now)
            return (1 - tokens) / self._per_ms / 1000
        self._local[key] = (tokens - 1, now)
        return None
