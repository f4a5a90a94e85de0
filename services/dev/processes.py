"""Child processes of the launcher (and of the test fixtures): start, watch, stop."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from services.dev.embedded import die_with_parent

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Child:
    name: str
    module: str
    env: dict[str, str]
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)

    def start(self) -> None:
        log = self.log_path.open("ab") if self.log_path else None
        try:
            self.process = subprocess.Popen(  # noqa: S603 - our own modules, our interpreter
                [sys.executable, "-m", self.module],
                env=self.env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT if log else None,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        finally:
            if log:
                log.close()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)

    def wait(self, timeout_s: float) -> bool:
        if self.process is None:
            return True
        try:
            self.process.wait(timeout=timeout_s)
            return True
        except subprocess.TimeoutExpired:
            return False


def stop_all(children: list[Child], timeout_s: float = 10.0) -> None:
    """SIGTERM every child, wait, then SIGKILL what is left: nothing stays behind."""
    for child in children:
        child.signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for child in children:
        if not child.wait(max(0.0, deadline - time.monotonic())):
            child.signal(signal.SIGKILL)
            child.wait(5)
