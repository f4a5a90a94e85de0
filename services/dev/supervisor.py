"""Keeps the embedded servers (NATS, PostgreSQL, Valkey) up: one that dies is restarted.

`check()` looks at each server once: a process that exited is reaped (Popen.poll), whatever it
left in its process group is killed, its stale locks are cleared (ServerProcess.prepare: for
PostgreSQL postmaster.pid and the socket's lock file) and it is started again on the same port
and data directory, so its state (JetStream store, database, append-only file) is kept and the
services reconnect to the same URL. The launcher calls check() from its loop; tests run it on a
thread (`start_thread`). A server that dies five times within a minute is a crash loop: check()
reports it rather than hiding it. `hold(name)` keeps a dead server down until `release(name)`
(chaos tests: PostgreSQL down for a few seconds).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from services.dev.embedded import ServerProcess

log = logging.getLogger("copytrade.supervisor")

CRASH_LOOP_RESTARTS = 5
CRASH_LOOP_WINDOW_S = 60.0


@dataclass
class ServerSupervisor:
    servers: list[ServerProcess]
    restarts: dict[str, list[float]] = field(default_factory=dict)
    held: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def check(self) -> bool:
        """Restart every dead server not held; False when one is crash-looping."""
        with self._lock:
            for server in self.servers:
                if server.name in self.held or server.process.poll() is None:
                    continue
                if not self._restart(server):
                    return False
        return True

    def _restart(self, server: ServerProcess) -> bool:
        now = time.monotonic()
        recent = [t for t in self.restarts.get(server.name, []) if now - t < CRASH_LOOP_WINDOW_S]
        if len(recent) >= CRASH_LOOP_RESTARTS:
            log.error("%s keeps dying (%d restarts in a minute)", server.name, len(recent))
            return False
        self.restarts[server.name] = [*recent, now]
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
            log.exception("%s did not come back; trying again", server.name)
            return True
        log.warning("%s is back (pid %d)", server.name, server.process.pid)
        return True

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
                if not self.check():
                    return

        self._thread = threading.Thread(target=loop, name="server-supervisor", daemon=True)
        self._thread.start()

    def stop_thread(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
