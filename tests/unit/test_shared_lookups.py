"""Market-data look-ups shared by a process (services/infra/lookups.py, issue 16): one request
per key and TTL, concurrent callers wait for the one in flight, failures are not cached."""

from __future__ import annotations

import asyncio

import pytest

from services.infra.lookups import SharedLookups


class Counting:
    def __init__(self, answer: object = 7, delay_s: float = 0.01) -> None:
        self.calls = 0
        self.answer = answer
        self.delay_s = delay_s

    async def __call__(self) -> object:
        self.calls += 1
        await asyncio.sleep(self.delay_s)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


async def test_concurrent_callers_share_one_request_then_the_ttl() -> None:
    now = [0.0]
    cache: SharedLookups[object] = SharedLookups(1.0, clock=lambda: now[0])
    fetch = Counting()
    assert await asyncio.gather(*(cache.get("k", fetch) for _ in range(50))) == [7] * 50
    assert fetch.calls == 1 and cache.fetches == 1
    now[0] = 0.9
    assert await cache.get("k", fetch) == 7 and fetch.calls == 1  # still fresh
    now[0] = 1.1
    assert await cache.get("k", fetch) == 7 and fetch.calls == 2  # expired: asked again
    assert await cache.get("other", fetch) == 7 and fetch.calls == 3  # keys are separate


async def test_a_failure_reaches_every_waiter_and_is_not_cached() -> None:
    cache: SharedLookups[object] = SharedLookups(60.0)
    failing = Counting(answer=ConnectionError("broker down"))
    results = await asyncio.gather(
        *(cache.get("k", failing) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, ConnectionError) for r in results) and failing.calls == 1
    assert await cache.get("k", Counting(answer=8)) == 8  # the next caller asks again


async def test_waiters_survive_the_owner_being_cancelled() -> None:
    cache: SharedLookups[object] = SharedLookups(60.0)
    slow = Counting(delay_s=10)
    owner = asyncio.ensure_future(cache.get("k", slow))
    await asyncio.sleep(0)
    waiter = asyncio.ensure_future(cache.get("k", Counting(answer=9)))
    await asyncio.sleep(0)
    owner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await owner
    assert await waiter == 9  # it asked itself instead of inheriting the cancellation
