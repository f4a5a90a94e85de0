"""A callback that acts on its first call only (releases, counters: every path out of a
block may call it, the effect happens once)."""

from __future__ import annotations

from collections.abc import Callable


def once(call: Callable[[], None]) -> Callable[[], None]:
    done = False

    def first() -> None:
        nonlocal done
        if not done:
            done = True
            call()

    return first
