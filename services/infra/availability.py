"""Is this exception a dependency that cannot be reached (not a bug)?

PostgreSQL down or restarting (connection refused, dropped, "the database system is starting
up", a pool that cannot hand out a connection), Redis unreachable, NATS not connected or a
publish not acknowledged in time. The API answers these 503 `unavailable` with Retry-After
(services/api/errors.py): the client retries the same request (POST /v1/orders is idempotent by
client_order_id) instead of seeing a 500.
"""

from __future__ import annotations

import asyncpg
from nats.errors import ConnectionClosedError, NoServersError, OutboundBufferLimitError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import ServiceUnavailableError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

_UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError,  # ConnectionRefusedError, ConnectionResetError, socket errors
    TimeoutError,
    PoolTimeoutError,
    OperationalError,
    InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.exceptions.OperatorInterventionError,  # 57P01 admin shutdown, 57P03 starting up
    asyncpg.InterfaceError,
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionClosedError,
    NoServersError,
    OutboundBufferLimitError,
    NatsTimeoutError,
    ServiceUnavailableError,
)


def dependency_unavailable(exc: BaseException) -> bool:
    """True when `exc`, or what it wraps (SQLAlchemy's `orig`, a cause), is a connection
    failure rather than a refusal or a bug (an IntegrityError stays a bug)."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, _UNREACHABLE):
            return True
        orig = getattr(current, "orig", None)
        pending += [orig if isinstance(orig, BaseException) else None]
        pending += [current.__cause__, current.__context__]
        if isinstance(current, BaseExceptionGroup):
            pending += list(current.exceptions)
    return False
