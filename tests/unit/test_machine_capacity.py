"""loadtest.machine: the cores' worth a benchmark's machine gives, printed with its numbers."""

from __future__ import annotations

from loadtest.machine import capacity, describe, summary


def test_the_reading_from_two_timings() -> None:
    # Two real cores: two processes at once each as fast as one alone.
    assert summary(0.1, 0.1)["cores_worth"] == 2.0
    # Two vCPUs doing one core's work: each of the two takes twice as long.
    one_core = summary(0.104, 0.208)
    assert one_core == {"one_process_ms": 104.0, "two_processes_ms": 208.0, "cores_worth": 1.0}
    assert "104.0 ms alone, 208.0 ms with two at once (1.0 cores' worth" in describe(one_core)


def test_the_workload_runs_in_two_processes() -> None:
    measured = capacity(repeats=1)
    assert measured["one_process_ms"] > 0 and measured["two_processes_ms"] > 0
    assert measured["cores_worth"] > 0
