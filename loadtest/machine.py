"""What the machine under a benchmark can do, printed with its numbers.

Two VMs that both report two CPUs differed by 2x in this project's runs: on one, two processes
each ran as fast as one alone; on another, two processes at once each ran at half speed (the two
vCPUs did the work of one core). Latency targets measured on the second read twice as far off.
`capacity()` runs the same pure-Python workload in one process, then in two at once, and reports
both times and how many cores' worth of work the two did together (2.0: two real cores). A
VM whose speed drifts between the two timings can read above 2 (this project's VM: the same
workload alone took 104 ms in one minute and 192 ms in another): read it as a rough figure.
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

_ROUNDS = 1500  # ~0.1 s of one core on a 2020s x86-64


def _negated(x: int) -> int:
    return -x


def _work(rounds: int) -> float:
    started = time.perf_counter()
    for _ in range(rounds):
        sorted(range(1000), key=_negated)
    return time.perf_counter() - started


def capacity(repeats: int = 3) -> dict[str, Any]:
    """One process's time for the workload, two processes' time side by side (each its own,
    the slower counted), and the cores' worth the pair did: 2 * alone / together."""
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(2, mp_context=context) as pool:
        pool.submit(_work, 10).result()  # both workers started before timing
        pool.submit(_work, 10).result()
        alone = statistics.median(pool.submit(_work, _ROUNDS).result() for _ in range(repeats))
        together = statistics.median(
            max(f.result() for f in [pool.submit(_work, _ROUNDS) for _ in range(2)])
            for _ in range(repeats)
        )
    return summary(alone, together)


def summary(alone_s: float, together_s: float) -> dict[str, Any]:
    """The reading from the two timings (seconds)."""
    return {
        "one_process_ms": round(alone_s * 1000, 1),
        "two_processes_ms": round(together_s * 1000, 1),
        "cores_worth": round(2 * alone_s / together_s, 2),
    }


def describe(measured: dict[str, Any]) -> str:
    return (
        f"machine: a fixed Python workload takes {measured['one_process_ms']} ms alone, "
        f"{measured['two_processes_ms']} ms with two at once "
        f"({measured['cores_worth']} cores' worth of work)"
    )


if __name__ == "__main__":
    print(describe(capacity()))
