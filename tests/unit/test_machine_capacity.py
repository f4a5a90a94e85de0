"""loadtest.machine: the cores' worth a benchmark's machine gives, printed with its numbers."""

from __future__ import annotations

import pytest

from loadtest.machine import capacity, describe


def test_two_processes_do_between_one_and_two_cores_of_work() -> None:
    measured = capacity(repeats=1)
    alone, together = measured["one_process_ms"], measured["two_processes_ms"]
    assert alone > 0 and together > 0
    assert measured["cores_worth"] == pytest.approx(2 * alone / together, abs=0.02)
    # Two processes do at most two cores' work; a VM whose speed changes between the two
    # timings (seen here: 104 to 192 ms for the same workload alone) can read past 2.
    assert 0.2 < measured["cores_worth"] < 4
    assert f"{measured['cores_worth']} cores' worth" in describe(measured)
