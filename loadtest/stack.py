"""The stack as an outside client sees it: processes started through their public entry points.

Nothing here imports `services`: the whole stack is `python -m services.dev.launcher`, configured
by `COPYTRADE_*` environment settings (ports, worker count, demo followers, data directory), and
is then reached over HTTP only. The simulator alone is `python -m brokers.sim`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import httpx

ROOT = Path(__file__).resolve().parents[1]

# The demo accounts the launcher seeds and prints (`make run`); overridable like the Locust
# scenarios' (loadtest/locustfile.py).
MASTER_EMAIL = os.environ.get("LOCUST_MASTER_EMAIL", "master@demo.copytrade.dev")
MASTER_PASSWORD = os.environ.get("LOCUST_MASTER_PASSWORD", "demo-master-password")

# Settings the caller's environment must not leak into a stack we start: external server URLs
# (we want the launcher's own embedded servers) and fixed ports of a running `make run`.
_NOT_INHERITED = (
    "COPYTRADE_NATS_URL",
    "COPYTRADE_DATABASE_URL",
    "COPYTRADE_REDIS_URL",
    "COPYTRADE_METRICS_PORT",
)


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when the thread that started it ends (Linux)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http(url: str, timeout_s: float, process: subprocess.Popen[bytes] | None = None) -> None:
    """Until `url` answers 200; fails early when `process` exits meanwhile."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer 200 within {timeout_s}s")


def stop(process: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    """SIGTERM (the launcher then stops everything it started), SIGKILL if it hangs."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def children(pid: int, module: str) -> list[int]:
    """Pids of `pid`'s child processes running `python -m <module>` (from /proc, Linux)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid and module.encode() in argv:
            found.append(int(entry.name))
    return sorted(found)


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children, their children, …), from /proc (Linux)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found, pending = [], [pid]
    while pending:
        for child in parents.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def component(pid: int) -> str:
    """What a stack process is, for a CPU breakdown: api, replicator, sweeper, …, postgres,
    nats, valkey, simulator, launcher."""
    try:
        argv = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        return "gone"
    if not argv:
        return "other"
    if "-m" in argv[:-1]:
        module = argv[argv.index("-m") + 1]
        return {
            "services.api": "api",
            "services.worker": "replicator",
            "services.dev.launcher": "launcher",
            "brokers.sim": "simulator",
        }.get(module, module.rsplit(".", 1)[-1])
    name = Path(argv[0]).name
    for known in ("postgres", "nats-server", "valkey", "redis"):
        if known in name or (known == "postgres" and "postgres:" in argv[0]):
            return "valkey" if known == "redis" else known
    return name


def cpu_by_component(pid: int, since: dict[str, float] | None = None) -> dict[str, float]:
    """CPU seconds used so far by each kind of process under `pid` (user + system); with
    `since` (an earlier answer), only what each kind used after it, where it used any."""
    totals: dict[str, float] = {}
    for child in descendants(pid):
        try:
            fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        name = component(child)
        totals[name] = totals.get(name, 0.0) + seconds
    if since is None:
        return totals
    return {k: v - since.get(k, 0.0) for k, v in totals.items() if v > since.get(k, 0.0)}


def start_simulator(log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`python -m brokers.sim` on a free port; returns the process and its base URL."""
    port = free_port()
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "brokers.sim"],
            env={**os.environ, "COPYTRADE_SIM_PORT": str(port)},
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/healthz", 20, process)
    except BaseException:
        stop(process, 10)
        raise
    return process, url


class Launcher:
    """`python -m services.dev.launcher` with its own data directory and free ports.

    Ready when it printed "copytrade is running" (servers up, migrations run, demo seeded) and
    the API answers /readyz. Its output goes to `<data_dir>/launcher.log`.
    """

    READY_LINE = "copytrade is running"

    def __init__(self, data_dir: Path, settings: dict[str, str], tls: bool = False) -> None:
        self.data_dir = data_dir
        self.api_port, self.sim_port = free_port(), free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        # tls: the simulator serves https (HTTP/2 and HTTP/1.1 by ALPN) with a certificate it
        # makes at start under data_dir/sim-tls; the workers trust its ca.pem.
        self.ca_file: Path | None = data_dir / "sim-tls" / "ca.pem" if tls else None
        scheme = "https" if tls else "http"
        self.sim_url = f"{scheme}://127.0.0.1:{self.sim_port}"
        if self.ca_file is not None:
            settings = {
                "COPYTRADE_SIM_TLS_DIR": str(self.ca_file.parent),
                "COPYTRADE_BROKER_CA_FILE": str(self.ca_file),
                **settings,
            }
        env = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
        self.env = {
            **env,
            "COPYTRADE_ENVIRONMENT": "development",
            "COPYTRADE_DATA_DIR": str(data_dir),
            "COPYTRADE_API_HOST": "127.0.0.1",
            "COPYTRADE_API_PORT": str(self.api_port),
            "COPYTRADE_SIM_HOST": "127.0.0.1",
            "COPYTRADE_SIM_PORT": str(self.sim_port),
            "COPYTRADE_SIM_URL": self.sim_url,
            **settings,
        }
        self.process: subprocess.Popen[bytes] | None = None
        self._ready = threading.Event()

    def start(self, timeout_s: float = 600.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.dev.launcher"],
            env=self.env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us; we stop the launcher in order
            preexec_fn=die_with_parent,  # (the launcher also sets this itself)
        )
        assert self.process.stdout is not None
        threading.Thread(target=self._copy_output, args=(self.process.stdout,), daemon=True).start()
        deadline = time.monotonic() + timeout_s
        while not self._ready.wait(0.2):
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the launcher exited with {self.process.returncode} during start-up "
                    f"(see {self.data_dir / 'launcher.log'} and {self.data_dir / 'logs'})"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"the launcher was not ready within {timeout_s}s")
        wait_http(f"{self.api_url}/readyz", 60, self.process)

    def _copy_output(self, stream: IO[bytes]) -> None:
        with (self.data_dir / "launcher.log").open("ab") as log:
            for line in stream:
                log.write(line)
                log.flush()
                if self.READY_LINE.encode() in line:
                    self._ready.set()

    def pids(self, module: str) -> list[int]:
        """The launcher's child processes running `module`, e.g. the replicators."""
        assert self.process is not None
        return children(self.process.pid, module)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
