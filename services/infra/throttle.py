"""Attempt counters in Redis for sign-in and registration throttles.

Each attempt is counted (INCR, in one MULTI with the window's EXPIRE) before it is evaluated,
so parallel attempts cannot all slip past a check-then-increment race. Past the limit the
caller is told to come back later with a backoff that doubles with each further attempt (capped
at the window) rather than being locked out: counters are per (email, client address) and per
address, so an attacker elsewhere cannot lock the owner of an email out.
"""

from __future__ import annotations

import hashlib
import ipaddress

import redis.asyncio as aioredis

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
    pipe = redis.pipeline(transaction=True)
    for key, _ in active:
        pipe.incr(key)
        pipe.expire(key, window_s, nx=True)
    results = await pipe.execute()
    waits = [
        backoff_s(int(count), limit, window_s)
        for (_, limit), count in zip(active, results[::2], strict=True)
        if int(count) > limit
    ]
    return max(waits) if waits else None


async def forget(redis: aioredis.Redis, key: str) -> None:
    await redis.delete(key)
