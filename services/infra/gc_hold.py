"""Young garbage collections wait while an order's first copies are on their way.

A young collection of the cyclic GC stops the worker for 1.3 to 5 ms at N = 500 to 2,000 (measured
with `gc.callbacks` in a bench run, README "Issue 13, fifth pass"), and with thousands of
allocations on the way from an order's message to its first follower's request, one of them
usually landed there. `GcHold.hold()` turns the collector off until every holder has released
(the first batch's answers are back) or `max_s` has passed since it was turned off, whichever
comes first; the collection it deferred then runs at the next allocation, while the first
requests are in flight. Reference counting frees everything else as usual; only cyclic garbage
waits, for at most `max_s`.

Only turns off a collector it found on, and only turns on one it turned off."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable

from services.infra.metrics import GC_HELD
from services.infra.once import once


class GcHold:
    def __init__(self, max_s: float = 0.1) -> None:
        self.max_s = max_s
        self._holders = 0
        self._off: asyncio.TimerHandle | None = None  # set while this turned the collector off

    @property
    def holding(self) -> bool:
        return self._off is not None

    def hold(self) -> Callable[[], None]:
        """Hold young collections off; returns the release (idempotent)."""
        self._holders += 1
        if self._off is None and self._holders == 1 and gc.isenabled():
            gc.disable()
            self._off = asyncio.get_running_loop().call_later(self.max_s, self._expire)
        return once(self._release)

    def _release(self) -> None:
        self._holders -= 1
        if self._holders == 0:
            self._resume()

    def _expire(self) -> None:
        """Held for max_s: collect again even if holders remain (they release as usual)."""
        GC_HELD.labels("expired").inc()
        self._off = None
        gc.enable()

    def _resume(self) -> None:
        if self._off is not None:
            GC_HELD.labels("released").inc()
            self._off.cancel()
            self._off = None
            gc.enable()
