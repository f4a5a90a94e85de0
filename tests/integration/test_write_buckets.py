"""The per-user write buckets against a real Valkey: concurrent takes of one user share round
trips (a group commit) and still answer exactly as one-by-one takes would."""

from __future__ import annotations

import asyncio
import uuid

import redis.asyncio as aioredis

from services.infra.throttle import TokenBuckets


async def _evalsha_calls(client: aioredis.Redis) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def test_concurrent_takes_of_one_user_share_round_trips(servers: dict[str, str]) -> None:
    client = aioredis.from_url(servers["redis"])
    try:
        buckets = TokenBuckets(client, per_second=1000, burst=1000, prefix=f"t:{uuid.uuid4()}")
        await buckets.take("warm")  # the script is loaded (EVALSHA from here on)
        before = await _evalsha_calls(client)
        answers = await asyncio.gather(*(buckets.take("u") for _ in range(50)))
        calls = await _evalsha_calls(client) - before
        assert answers == [None] * 50
        assert calls <= 3, calls  # the first alone, the 49 that waited for it in one more
    finally:
        await client.aclose()


async def test_a_batch_that_does_not_fit_is_answered_one_by_one(servers: dict[str, str]) -> None:
    client = aioredis.from_url(servers["redis"])
    try:
        # 5 tokens, refilled one per 1,000 s: of 20 concurrent takes exactly 5 pass.
        buckets = TokenBuckets(client, per_second=0.001, burst=5, prefix=f"t:{uuid.uuid4()}")
        answers = await asyncio.gather(*(buckets.take("u") for _ in range(20)))
        assert answers.count(None) == 5
        assert all(wait is not None and wait > 0 for wait in answers if wait is not None)
        # Another user's bucket is its own.
        assert await buckets.take("v") is None
    finally:
        await client.aclose()
