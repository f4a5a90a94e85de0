"""The order progress rule (replication.progress) as a table."""

from __future__ import annotations

import pytest

from replication.progress import OPEN_STATUSES, fanout_ms, open_legs, progress_status
from replication.state import SETTLED, LegStatus


@pytest.mark.parametrize(
    ("planned", "by_status", "status"),
    [
        (False, {}, "accepted"),
        (False, {"filled": 3}, "accepted"),  # shards still planning: not yet replicated
        (False, {"planned": 2}, "accepted"),
        (True, {}, "replicated"),  # planned with no followers
        (True, {"filled": 2, "skipped": 1}, "replicated"),
        (True, {"filled": 2, "planned": 1}, "replicating"),
        (True, {"submitting": 1}, "replicating"),
        (True, {"unknown": 1, "rejected": 4}, "replicating"),
        (True, {"accepted": 1, "partially_filled": 1}, "replicated"),  # at the broker = settled
        (True, {"failed": 1, "canceled": 1}, "replicated"),
        (True, {"planned": 0}, "replicated"),
    ],
)
def test_progress_status(planned: bool, by_status: dict[str, int], status: str) -> None:
    assert progress_status(planned, by_status) == status


@pytest.mark.parametrize(
    ("planned", "by_status", "elapsed_ms", "expected"),
    [
        (True, {"filled": 1}, 12.34567, 12.346),
        (True, {"filled": 1}, None, None),  # no follower leg settled yet
        (True, {"filled": 1, "submitting": 1}, 12.3, None),
        (False, {"filled": 1}, 12.3, None),
    ],
)
def test_fanout_is_known_once_replicated(
    planned: bool, by_status: dict[str, int], elapsed_ms: float | None, expected: float | None
) -> None:
    assert fanout_ms(planned, by_status, elapsed_ms) == expected


def test_open_statuses_are_exactly_the_unsettled_ones() -> None:
    assert OPEN_STATUSES == {s.value for s in LegStatus} - {s.value for s in SETTLED}
    assert OPEN_STATUSES == {"planned", "submitting", "unknown", "retrying"}
    assert open_legs({"planned": 2, "unknown": 1, "filled": 5, "not_a_status": 7}) == 3
