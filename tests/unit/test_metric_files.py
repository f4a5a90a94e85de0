"""A replaced API worker's gauges leave /metrics with it (prometheus multiprocess mode)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from services.infra.metrics import forget_dead_processes


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])  # a process that is gone once reaped
    process.wait()
    return process.pid


def test_the_gauges_of_a_dead_worker_are_dropped_and_its_counters_kept(tmp_path: Path) -> None:
    dead, alive = _dead_pid(), os.getpid()
    files = [
        f"gauge_all_{dead}.db",
        f"gauge_livesum_{dead}.db",
        f"counter_{dead}.db",
        f"histogram_{dead}.db",
        f"gauge_all_{alive}.db",
    ]
    for name in files:
        (tmp_path / name).write_bytes(b"")
    assert forget_dead_processes(str(tmp_path)) == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"counter_{dead}.db", f"histogram_{dead}.db", f"gauge_all_{alive}.db"]
    )
