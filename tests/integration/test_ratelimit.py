"""Rate budgets on a real Redis, shared by several clients; the circuit breaker."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import redis.asyncio as aioredis

from replication.errors import Retryable
from services.infra.ratelimit import CircuitBreaker, Limit, RateBudget


async def test_budget_is_shared_and_never_exceeds_the_window(servers: dict[str, str]) -> None:
    key = f"copytrade:test:budget:{uuid.uuid4().hex}"
    clients = [aioredis.from_url(servers["redis"]) for _ in range(3)]
    limit = Limit.window(50, 1.0)  # at most 50 per second, in any second
    budgets = [RateBudget(c, key, limit, max_wait_s=10) for c in clients]
    stamps: list[float] = []

    async def worker(budget: RateBudget) -> None:
        for _ in range(40):
            await budget.acquire()
            stamps.append(time.monotonic())

    started = time.monotonic()
    await asyncio.gather(*(worker(b) for b in budgets))
    elapsed = time.monotonic() - started
    stamps.sort()
    # 120 requests at 42.5/s after a burst of 2.5 take about 2.8 s …
    assert elapsed > 2.5
    # … and no one-second window ever holds more than the broker's 50.
    worst = max(sum(1 for t in stamps if s <= t < s + 1.0) for s in stamps)
    assert worst <= 50, worst
    for c in clients:
        await c.aclose()


async def test_budgets_are_independent_and_refuse_long_waits(servers: dict[str, str]) -> None:
    client = aioredis.from_url(servers["redis"])
    try:
        tight = RateBudget(client, f"copytrade:test:{uuid.uuid4().hex}", Limit(1, 0.1), 0.5)
        other = RateBudget(client, f"copytrade:test:{uuid.uuid4().hex}", Limit(1, 0.1), 0.5)
        assert await tight.reserve() == 0
        with pytest.raises(Retryable) as refused:
            await tight.reserve()  # the next token is 10 s away
        assert refused.value.code == "rate_budget" and refused.value.retry_after > 5
        assert await other.reserve() == 0  # another broker's budget is untouched
    finally:
        await client.aclose()


def test_circuit_breaker_opens_fails_fast_and_half_opens() -> None:
    now = [0.0]
    breaker = CircuitBreaker(threshold=3, reset_s=5, clock=lambda: now[0])
    for _ in range(3):
        breaker.before()
        breaker.failure()
    with pytest.raises(Retryable) as open_error:
        breaker.before()
    assert open_error.value.code == "circuit_open"
    now[0] = 6.0
    breaker.before()  # one trial call
    with pytest.raises(Retryable):
        breaker.before()  # no second caller while the trial runs
    breaker.success()
    breaker.before()
    assert breaker.failures == 0 and breaker.opened_at is None
