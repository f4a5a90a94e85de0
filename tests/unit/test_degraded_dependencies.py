"""Without Redis the sign-in throttle fails open to local counters; unreachable dependencies
are told apart from bugs (503 `unavailable` versus 500)."""

from __future__ import annotations

import redis.asyncio as aioredis
from sqlalchemy.exc import IntegrityError, OperationalError

from services.dev.embedded import free_port
from services.infra.availability import dependency_unavailable
from services.infra.throttle import LOCAL, count_attempts, forget


async def test_throttle_counts_locally_when_redis_is_unreachable() -> None:
    redis = aioredis.Redis.from_url(
        f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1
    )  # nothing listens there
    try:
        key = f"login:pair:test-{free_port()}"
        waits = [await count_attempts(redis, [(key, 3)], 300) for _ in range(5)]
        assert waits[:3] == [None, None, None]
        assert waits[3] is not None and waits[4] is not None and waits[4] >= waits[3]
        assert LOCAL.degraded
        await forget(redis, key)  # a success clears the local backoff too
        assert await count_attempts(redis, [(key, 3)], 300) is None
    finally:
        await redis.aclose()


def test_connection_failures_are_unavailable_and_bugs_are_not() -> None:
    refused = OperationalError("SELECT 1", {}, ConnectionRefusedError(111, "refused"))
    assert dependency_unavailable(refused)
    try:
        try:
            raise ConnectionResetError("reset by peer")
        except ConnectionResetError as exc:
            raise RuntimeError("wrapped") from exc
    except RuntimeError as wrapped:
        assert dependency_unavailable(wrapped)
    assert not dependency_unavailable(IntegrityError("INSERT", {}, ValueError("duplicate")))
    assert not dependency_unavailable(ValueError("a bug"))
