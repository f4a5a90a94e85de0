"""A circuit breaker per broker host (services/infra/ratelimit.py wraps every adapter in one)."""

from __future__ import annotations

import time
from collections.abc import Callable

from replication.errors import Retryable
from services.infra.metrics import CIRCUIT_OPEN


class CircuitBreaker:
    """Opens after `threshold` consecutive failures that suggest the host is down; while open,
    calls fail fast (not sent, safe to retry); after `reset_s` one trial call is let through.

    Any well-formed answer closes it (an order, a 404, a rejection, a 429): the host is up.
    A trial that ends with neither answer nor failure (cancelled, a bug) must not keep the
    breaker half-open for ever, so a trial older than `reset_s` lets the next caller try."""

    def __init__(
        self,
        threshold: int = 20,
        reset_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        host: str = "",
    ) -> None:
        self.host = host
        self.threshold = threshold
        self.reset_s = reset_s
        self._clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self._trial_at: float | None = None

    def before(self) -> None:
        if self.opened_at is None:
            return
        now = self._clock()
        remaining = self.opened_at + self.reset_s - now
        trial_running = self._trial_at is not None and now - self._trial_at < self.reset_s
        if remaining > 0 or trial_running:
            raise Retryable("circuit open", retry_after=max(remaining, 0.5), code="circuit_open")
        self._trial_at = now  # half-open: this one call decides

    def success(self) -> None:
        """A well-formed answer from the host (whatever it said)."""
        if self.opened_at is not None:
            CIRCUIT_OPEN.labels(self.host).set(0)
        self.failures, self.opened_at, self._trial_at = 0, None, None

    def failure(self) -> None:
        self.failures += 1
        self._trial_at = None
        if self.failures >= self.threshold or self.opened_at is not None:
            self.opened_at = self._clock()
            CIRCUIT_OPEN.labels(self.host).set(1)
