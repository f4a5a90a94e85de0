"""Lua scripts on Valkey, the calls made in one event-loop iteration sent together.

A batch of legs is sent with `asyncio.gather`: every leg's broker call is first admitted by its
account's 429 gate and, where the broker has them, its account and host budgets: one script on
Valkey (`ratelimit.ADMISSION_SCRIPT`). Sent one by one that is a round trip per leg, ~8% of a
replicator's CPU at N = 500 (py-spy, README "Issue 13, fourth pass"). Here the calls waiting at
the end of a loop iteration go as one pipeline (not a transaction: each script is still atomic
on its own, in the order the calls were made), and each caller gets its own answer or its own
error. EVALSHA first; scripts Valkey does not know (after a restart) are loaded and those calls
sent again.

A few lines rather than redis-py's pipeline scripts, which ask SCRIPT EXISTS before every batch.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from typing import Any
from weakref import WeakKeyDictionary

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

_Call = tuple["BatchedScript", Sequence[Any], Sequence[Any], "asyncio.Future[Any]"]


class ScriptBatches:
    """One per Redis client and process (`for_client`)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._pending: list[_Call] = []
        self._sending: set[asyncio.Task[None]] = set()
        self._scripts: dict[str, BatchedScript] = {}  # by body: registered once per client
        self.round_trips = 0  # pipelines sent (for tests and benchmarks)

    def register(self, body: str) -> BatchedScript:
        script = self._scripts.get(body)
        if script is None:
            script = self._scripts[body] = BatchedScript(self, body)
        return script

    def call(self, script: BatchedScript, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._pending:
            # Its first step runs after every task already ready in this iteration (the rest
            # of a gathered batch), so it finds their calls pending too.
            task = loop.create_task(self._flush())
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
        self._pending.append((script, keys, args, future))
        return future

    async def _flush(self) -> None:
        batch, self._pending = self._pending, []
        await self._send(batch)

    async def _send(self, batch: list[_Call]) -> None:
        try:
            answers = await self._pipeline(batch)
            unknown = [i for i, answer in enumerate(answers) if isinstance(answer, NoScriptError)]
            if unknown:
                for body in {batch[i][0].body for i in unknown}:
                    await self._redis.script_load(body)
                again = await self._pipeline([batch[i] for i in unknown])
                for i, answer in zip(unknown, again, strict=True):
                    answers[i] = answer
        except BaseException as exc:  # every caller hears what happened to its call
            for *_, future in batch:
                if future.done():
                    continue
                if isinstance(exc, asyncio.CancelledError):
                    future.cancel()
                else:
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (*_, future), answer in zip(batch, answers, strict=True):
            if future.done():  # its caller was cancelled meanwhile
                continue
            if isinstance(answer, Exception):
                future.set_exception(answer)
            else:
                future.set_result(answer)

    async def _pipeline(self, batch: list[_Call]) -> list[Any]:
        self.round_trips += 1
        pipe = self._redis.pipeline(transaction=False)
        for script, keys, args, _ in batch:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        return list(await pipe.execute(raise_on_error=False))


class BatchedScript:
    """Called like redis-py's registered scripts: `await script(keys=[...], args=[...])`."""

    def __init__(self, batches: ScriptBatches, body: str) -> None:
        self._batches = batches
        self.body = body
        self.sha = hashlib.sha1(body.encode()).hexdigest()  # noqa: S324 (Redis's script id)

    async def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
        return await self._batches.call(self, keys, args)


_by_client: WeakKeyDictionary[aioredis.Redis, ScriptBatches] = WeakKeyDictionary()


def for_client(redis: aioredis.Redis) -> ScriptBatches:
    batches = _by_client.get(redis)
    if batches is None:
        batches = _by_client[redis] = ScriptBatches(redis)
    return batches
