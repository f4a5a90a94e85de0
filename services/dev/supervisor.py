"""Keeps the embedded servers (NATS, PostgreSQL, Valkey) up: one that dies is restarted.

`check()` looks at each server once: a process that exited is reaped (Popen.poll), whatever it
left in its process group is killed, its stale locks are cleared (ServerProcess.prepare: for
PostgreSQL postmaster.pid and the socket's lock file) and it is started again on the same port
and data directory, so its state (JetStream store, database, append-only file) is kept and the
services reconnect to the same URL. The launcher calls check() from its loop; tests run it on a
thread (`start_thread`). A server that keeps dying (its disk is full, its port is taken, the
machine is out of memory: usually something outside it) is never given up on: the first death is
restarted at once, each further death in a row waits twice as long (RestartBackoff: 0.5 s, 1 s,
2 s … capped at 30 s), and a server that stayed up for a minute starts again from zero. Every
death is logged with its count and the wait. `hold(name)` keeps a dead server down until
`release(name)` (chaos tests: PostgreSQL down for a few seconds).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from services.dev.embedded import ServerProcess

log = logging.getLogger("copytrade.supervisor")


@dataclass
class RestartBackoff:
    """When a process found dead may start again: at once after a death that ended a healthy
    run (up at least `healthy_after_s`), else after `base_s` doubled per death in a row,
    capped at `cap_s`. Never gives up: an outage outside the process ends some day."""

    base_s: float = 0.5
    cap_s: float = 30.0
    healthy_after_s: float = 60.0
    clock: Callable[[], float] = time.monotonic
    deaths: dict[str, int] = field(default_factory=dict)  # in a row
    _started: dict[str, float] = field(default_factory=dict)
    _due: dict[str, float] = field(default_factory=dict)

    def started(self, name: str) -> None:
        self._started[name] = self.clock()

    def due(self, name: str) -> bool:
        """`name` is dead: True when it may be restarted now (then call started())."""
        now = self.clock()
        if name not in self._due:
            up_for = now - self._started.get(name, float("-inf"))
            deaths = 1 if up_for >= self.healthy_after_s else self.deaths.get(name, 0) + 1
            self.deaths[name] = deaths
            delay = self.delay_s(deaths)
            self._due[name] = now + delay
            log.warning("%s died (%d in a row); restarting in %.1f s", name, deaths, delay)
        if now < self._due[name]:
            return False
        del self._due[name]
        return True

    def delay_s(self, deaths: int) -> float:
        return 0.0 if deaths <= 1 else min(self.cap_s, self.base_s * 2.0 ** min(deaths - 2, 30))


@dataclass
class ServerSupervisor:
    servers: list[ServerProcess]
    backoff: RestartBackoff = field(default_factory=RestartBackoff)
    restarts: dict[str, list[float]] = field(default_factory=dict)  # when each restart began
    held: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def check(self) -> None:
        """Restart every dead server not held whose backoff is over."""
        with self._lock:
            for server in self.servers:
                if server.name in self.held or server.process.poll() is None:
                    continue
                if self.backoff.due(server.name):
                    self._restart(server)

    def _restart(self, server: ServerProcess) -> None:
        self.restarts.setdefault(server.name, []).append(time.monotonic())
        self.backoff.started(server.name)
        log.warning(
            "%s (pid %d) exited with %s; restarting on port %d",
            server.name,
            server.process.pid,
            server.process.returncode,
            server.port,
        )
        try:
            server.restart(timeout_s=30)
        except Exception:
            log.exception("%s did not come back; trying again after a backoff", server.name)
            return
        log.warning("%s is back (pid %d)", server.name, server.process.pid)

    def hold(self, name: str) -> None:
        """Do not restart `name` until release(name)."""
        with self._lock:
            self.held.add(name)

    def release(self, name: str) -> None:
        with self._lock:
            self.held.discard(name)

    def server(self, name: str) -> ServerProcess:
        return next(s for s in self.servers if s.name == name)

    def start_thread(self, interval_s: float = 0.1) -> None:
        def loop() -> None:
            while not self._stop.wait(interval_s):
                self.check()

        self._thread = threading.Thread(target=loop, name="server-supervisor", daemon=True)
        self._thread.start()

    def stop_thread(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
