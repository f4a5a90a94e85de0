"""A master order's progress from its follower legs' counts: the pure status rule.

`accepted` until every shard of the order is planned, then `replicating` while any follower
leg is still open (planned, submitting, unknown), then `replicated`. The fan-out time is known
only once the order is replicated.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from replication.state import SETTLED, LegStatus

# Leg statuses that still need the sender or a lookup; anything else counts as settled.
OPEN_STATUSES = frozenset(status.value for status in LegStatus if status not in SETTLED)


class OrderProgressStatus(StrEnum):
    ACCEPTED = "accepted"
    REPLICATING = "replicating"
    REPLICATED = "replicated"


def open_legs(by_status: Mapping[str, int]) -> int:
    return sum(n for status, n in by_status.items() if status in OPEN_STATUSES)


def progress_status(planned: bool, by_status: Mapping[str, int]) -> OrderProgressStatus:
    """The order's status from whether it is planned and its follower legs by status."""
    if not planned:
        return OrderProgressStatus.ACCEPTED
    if open_legs(by_status):
        return OrderProgressStatus.REPLICATING
    return OrderProgressStatus.REPLICATED


def fanout_ms(
    planned: bool, by_status: Mapping[str, int], elapsed_ms: float | None
) -> float | None:
    """Order created → last follower leg settled, in ms (3 decimals), once it is replicated."""
    if elapsed_ms is None or progress_status(planned, by_status) != OrderProgressStatus.REPLICATED:
        return None
    return round(float(elapsed_ms), 3)
