"""services.infra.scripts: the scripts called in one loop iteration go to Valkey together, and
every caller still gets its own answer or its own error."""

from __future__ import annotations

import asyncio
import uuid

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from services.infra.scripts import ScriptBatches, for_client

COUNT = """
if ARGV[1] == 'bad' then return redis.error_reply('refused: ' .. KEYS[1]) end
return redis.call('INCRBY', KEYS[1], tonumber(ARGV[1]))
"""


def _keys(n: int) -> list[str]:
    run = uuid.uuid4().hex
    return [f"test:batches:{run}:{i}" for i in range(n)]


async def test_one_iterations_calls_are_one_round_trip_with_their_own_answers(
    redis: aioredis.Redis,
) -> None:
    batches = ScriptBatches(redis)
    count = batches.register(COUNT)
    keys = _keys(51)
    await count(keys=[keys.pop()], args=[1])  # Valkey learns the script
    before = batches.round_trips
    answers = await asyncio.gather(*(count(keys=[k], args=[i + 1]) for i, k in enumerate(keys)))
    assert answers == list(range(1, 51))
    assert batches.round_trips == before + 1
    # In call order, each atomic: the same key twice in one batch counts twice.
    twice = await asyncio.gather(count(keys=[keys[0]], args=[10]), count(keys=[keys[0]], args=[5]))
    assert twice == [11, 16] and batches.round_trips == before + 2
    assert for_client(redis) is for_client(redis)


async def test_a_script_valkey_forgot_is_loaded_and_sent_again(redis: aioredis.Redis) -> None:
    batches = ScriptBatches(redis)
    count = batches.register(COUNT)
    keys = _keys(3)
    await redis.script_flush()
    assert await asyncio.gather(*(count(keys=[k], args=[2]) for k in keys)) == [2, 2, 2]
    assert batches.round_trips == 2  # NOSCRIPT, then again after SCRIPT LOAD


async def test_one_callers_error_is_its_own(redis: aioredis.Redis) -> None:
    batches = ScriptBatches(redis)
    count = batches.register(COUNT)
    keys = _keys(3)
    answers = await asyncio.gather(
        count(keys=[keys[0]], args=[1]),
        count(keys=[keys[1]], args=["bad"]),
        count(keys=[keys[2]], args=[3]),
        return_exceptions=True,
    )
    assert answers[0] == 1 and answers[2] == 3
    assert isinstance(answers[1], ResponseError) and "refused" in str(answers[1])


async def test_a_cancelled_caller_leaves_the_others_answered(redis: aioredis.Redis) -> None:
    batches = ScriptBatches(redis)
    count = batches.register(COUNT)
    keys = _keys(3)
    tasks = [asyncio.create_task(count(keys=[k], args=[1])) for k in keys]
    await asyncio.sleep(0)
    tasks[1].cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert done[0] == 1 and done[2] == 1 and isinstance(done[1], asyncio.CancelledError)


async def test_an_unreachable_valkey_is_every_callers_error() -> None:
    unreachable = aioredis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.5)
    try:
        count = ScriptBatches(unreachable).register(COUNT)
        answers = await asyncio.gather(
            *(count(keys=[k], args=[1]) for k in _keys(3)), return_exceptions=True
        )
        assert all(
            isinstance(a, (ConnectionError, OSError)) or "Connect" in type(a).__name__
            for a in answers
        ), answers
    finally:
        await unreachable.aclose()
