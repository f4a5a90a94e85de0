"""A worker process that must not outlive the process that started it.

The API's workers (COPYTRADE_API_WORKERS > 1) are multiprocessing children of the server's
main process (uvicorn's supervisor). If that main process is killed (kill -9, OOM), nothing
tells them: they keep the port bound and serve with nobody supervising them. `exit_with_parent()`
arms two guards in such a child: the kernel's parent-death signal (PR_SET_PDEATHSIG, SIGKILL:
the supervisor starts its workers from its main thread) and a watchdog thread that notices the
child was re-parented; the latter sends SIGTERM, then the process ends after a grace period.
The kernel's SIGKILL is the guard that always works: a worker orphaned while starting can block
in native code holding the GIL (tests/chaos/test_process_faults.py caught one under granian), so
neither a Python signal handler nor the watchdog thread ever runs again there.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import threading
import time

log = logging.getLogger("copytrade.lifetime")

PR_SET_PDEATHSIG = 1
GRACE_S = 5.0


def exit_with_parent(interval_s: float = 0.5) -> bool:
    """Arm the guards when this process is a multiprocessing child; True when armed."""
    if multiprocessing.parent_process() is None:
        return False
    parent = os.getppid()
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent or parent == 1:  # the parent died before the guard was armed
        _leave()
    threading.Thread(
        target=_watch, args=(parent, interval_s), name="exit-with-parent", daemon=True
    ).start()
    return True


def _watch(parent: int, interval_s: float) -> None:
    while os.getppid() == parent:
        time.sleep(interval_s)
    _leave()


def _leave() -> None:
    log.warning("parent process %d is gone; this worker stops", os.getppid())
    # The kernel ends the process after the grace period whatever Python is doing: a worker
    # stopping with requests in flight can keep the GIL from this thread, so the `os._exit`
    # below may never run (seen in tests/chaos/test_process_faults.py: an orphan kept serving).
    signal.alarm(int(GRACE_S) + 1)  # SIGALRM's default action terminates the process
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(GRACE_S)
    os._exit(1)
