"""What a transport failure means for an order, shared by every adapter.

A failure before the request left this process (connect error, no pooled connection free) is
safe to retry; any failure after it was sent leaves the outcome unknown, to be looked up.
"""

from __future__ import annotations

import httpx

from replication.errors import BrokerError, Retryable, Unknown

NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def transport_error(exc: httpx.HTTPError) -> BrokerError:
    if isinstance(exc, NOT_SENT):
        return Retryable(f"{type(exc).__name__}: {exc}", retry_after=0.5, code="connect")
    return Unknown(f"{type(exc).__name__}: {exc}", code="transport")


def retry_after(header: str | None, default: float = 1.0) -> float:
    try:
        return max(0.0, float(header)) if header else default
    except ValueError:
        return default
