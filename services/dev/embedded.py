"""Embedded servers from pip-installed wheels: NATS (JetStream), PostgreSQL, Valkey.

Used by the launcher when no COPYTRADE_*_URL is configured, and by the test fixtures. Every
server binds 127.0.0.1 on a chosen (or free) port and keeps its state under one directory.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from services.dev.binaries import nats_server_binary, postgres_bin_dir, valkey_binary
from services.dev.credentials import initdb_options, internal_credentials, nats_passwords, with_user
from services.infra.nats_auth import WORKER, authorization_block

PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports. Asked one at a time, the kernel may hand out the same port
    twice (nothing holds it in between): a 3-node cluster once got a node's client port equal to
    another node's route port, and that node never started."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when the process that started it dies (Linux)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def wait_for_port(
    port: int, timeout_s: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"process exited with {process.returncode} before listening on {port}"
            )
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout_s}s")


@dataclass
class ServerProcess:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    stop_signal: int = signal.SIGTERM
    log_path: Path | None = None
    args: list[str] = field(default_factory=list)
    port: int = 0
    # Before a restart: clear what a killed server leaves behind (PostgreSQL's lock files).
    prepare: Callable[[], None] | None = None

    def kill(self) -> None:
        """kill -9, as a crash would (tests: a cluster node dies mid fan-out)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def restart(self, timeout_s: float = 15.0) -> None:
        """Start the same server again on the same port and state (after stop() or kill())."""
        if self.process.poll() is None:
            raise RuntimeError(f"{self.name} is still running")
        assert self.log_path is not None and self.args
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)  # what the dead leader left in its group
        if self.prepare is not None:
            self.prepare()
        self.process = _spawn(self.args, self.log_path)
        wait_for_port(self.port, timeout_s, self.process)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, self.stop_signal)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)


def _spawn(args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    log = log_path.open("ab")
    try:
        return subprocess.Popen(  # noqa: S603 - fixed binaries from our own wheels
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
    finally:
        log.close()


def _nats_config(
    state_dir: Path, cluster: str = "", passwords: dict[str, str] | None = None
) -> Path:
    config = state_dir / "nats.conf"
    # Money: every JetStream write is fsynced before the publish is acknowledged.
    # With `passwords`: one user per service role (services/infra/nats_auth.py), no anonymous.
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(
            "jetstream {\n"
            f"  store_dir: {json.dumps(str(state_dir / 'jetstream'))}\n"
            "  sync_interval: always\n"
            "}\n" + cluster + (authorization_block(passwords) if passwords else "")
        )
    return config


def _nats_args(config: Path, port: int, name: str) -> list[str]:
    return [
        str(nats_server_binary()),
        "-c",
        str(config),
        "-a",
        "127.0.0.1",
        "-p",
        str(port),
        "-js",
        "--server_name",
        name,
    ]


def start_nats(
    state_dir: Path, port: int | None = None, passwords: dict[str, str] | None = None
) -> ServerProcess:
    state_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log_path = state_dir / "nats.log"
    args = _nats_args(_nats_config(state_dir, passwords=passwords), port, "copytrade-embedded")
    process = _spawn(args, log_path)
    wait_for_port(port, 15, process)
    return ServerProcess(
        "nats", process, f"nats://127.0.0.1:{port}", log_path=log_path, args=args, port=port
    )


def start_nats_cluster(
    state_dir: Path, size: int = 3, passwords: dict[str, str] | None = None
) -> list[ServerProcess]:
    """`size` nats-server processes from the same wheel, with routes between them (a JetStream
    cluster: R3 streams survive the loss of any one node). Each keeps its own store under
    `state_dir/n<i>`; a node restarted on the same directory rejoins and catches up."""
    ports = free_ports(2 * size)
    client_ports, route_ports = ports[:size], ports[size:]
    routes = ", ".join(f"nats-route://127.0.0.1:{port}" for port in route_ports)
    nodes: list[ServerProcess] = []
    try:
        for index in range(size):
            node_dir = state_dir / f"n{index + 1}"
            node_dir.mkdir(parents=True, exist_ok=True)
            cluster = (
                "cluster {\n"
                "  name: copytrade\n"
                f"  listen: 127.0.0.1:{route_ports[index]}\n"
                f"  routes: [{routes}]\n"
                "}\n"
            )
            args = _nats_args(
                _nats_config(node_dir, cluster, passwords),
                client_ports[index],
                f"copytrade-n{index + 1}",
            )
            log_path = node_dir / "nats.log"
            process = _spawn(args, log_path)
            url = f"nats://127.0.0.1:{client_ports[index]}"
            nodes.append(
                ServerProcess(
                    f"nats-{index + 1}",
                    process,
                    url,
                    log_path=log_path,
                    args=args,
                    port=client_ports[index],
                )
            )
        for node in nodes:
            wait_for_port(node.port, 15, node.process)
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return nodes


def cluster_url(nodes: list[ServerProcess]) -> str:
    """The comma-separated server list COPYTRADE_NATS_URL takes."""
    return ",".join(node.url for node in nodes)


def _as_postgres_user() -> list[str]:
    """PostgreSQL refuses to run as root: map root to an unprivileged uid in a user namespace."""
    if os.geteuid() != 0:
        return []
    unshare = shutil.which("unshare")
    if unshare is None:
        raise RuntimeError("running as root needs `unshare` (util-linux) to start PostgreSQL")
    return [unshare, "--user", "--map-user=1000", "--map-group=1000"]


def start_postgres(
    state_dir: Path, port: int | None = None, password: str | None = None
) -> ServerProcess:
    state_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    bin_dir = postgres_bin_dir()
    data = state_dir / "pgdata"
    log_path = state_dir / "postgres.log"
    prefix = _as_postgres_user()
    if not (data / "PG_VERSION").exists():
        options = initdb_options(state_dir, password)
        with log_path.open("ab") as log:
            subprocess.run(  # noqa: S603
                [*prefix, str(bin_dir / "initdb"), "-D", str(data), *options],
                check=True,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
    clear = functools.partial(_clear_postgres_locks, data, state_dir, port)
    clear()
    args = [
        *prefix,
        str(bin_dir / "postgres"),
        "-D",
        str(data),
        "-p",
        str(port),
        "-k",
        str(state_dir),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        "max_connections=200",
        "-c",
        "shared_buffers=128MB",
        "-c",
        "synchronous_commit=on",
    ]
    process = _spawn(args, log_path)
    wait_for_port(port, 30, process)
    _wait_accepting(bin_dir, port, 30, process)
    user = f"postgres:{password}" if password else "postgres"
    return ServerProcess(
        "postgres",
        process,
        f"postgresql+asyncpg://{user}@127.0.0.1:{port}/postgres",
        stop_signal=signal.SIGINT,  # fast shutdown
        log_path=log_path,
        args=args,
        port=port,
        prepare=clear,
    )


def _wait_accepting(
    bin_dir: Path, port: int, timeout_s: float, process: subprocess.Popen[bytes]
) -> None:
    """Until PostgreSQL accepts connections: it listens while still starting up (a connection
    then fails with "the database system is starting up"; seen in the measuring scripts)."""
    deadline = time.monotonic() + timeout_s
    probe = [str(bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port), "-t", "1"]
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"postgres exited with {process.returncode} while starting")
        if subprocess.run(probe, check=False, stdin=subprocess.DEVNULL).returncode == 0:  # noqa: S603
            return
        time.sleep(0.05)
    raise TimeoutError(f"postgres on {port} did not accept connections within {timeout_s}s")


def _clear_postgres_locks(data: Path, socket_dir: Path, port: int) -> None:
    """A killed postmaster leaves postmaster.pid and the socket's lock file; a new one refuses
    to start while they exist. Only called when our own server's process group is gone."""
    for stale in (data / "postmaster.pid", socket_dir / f".s.PGSQL.{port}.lock"):
        stale.unlink(missing_ok=True)
    (socket_dir / f".s.PGSQL.{port}").unlink(missing_ok=True)


def start_valkey(
    state_dir: Path, port: int | None = None, password: str | None = None
) -> ServerProcess:
    state_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log_path = state_dir / "valkey.log"
    args = [
        str(valkey_binary()),
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(state_dir),
        "--save",
        "",
        "--appendonly",
        "yes",
        "--protected-mode",
        "yes",
        *(["--requirepass", password] if password else []),
    ]
    process = _spawn(args, log_path)
    wait_for_port(port, 15, process)
    auth = f":{password}@" if password else ""
    url = f"redis://{auth}127.0.0.1:{port}/0"
    return ServerProcess("valkey", process, url, log_path=log_path, args=args, port=port)


@dataclass
class EmbeddedStack:
    servers: list[ServerProcess] = field(default_factory=list)

    def url(self, name: str) -> str:
        if name == "nats":
            nodes = [s for s in self.servers if s.name == "nats" or s.name.startswith("nats-")]
            if nodes:
                return cluster_url(nodes)
        for server in self.servers:
            if server.name == name:
                return server.url
        raise KeyError(name)

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()


def start_stack(
    data_dir: Path,
    *,
    nats_url: str | None = None,
    database_url: str | None = None,
    redis_url: str | None = None,
    nats_cluster: int = 1,
) -> tuple[EmbeddedStack, dict[str, str]]:
    """Start whichever servers have no URL configured; return the stack and all three URLs.
    `nats_cluster` > 1 starts that many NATS nodes as one cluster (the URL lists them all).
    Every server needs the passwords of `internal_credentials(data_dir)`; the NATS URL carries
    the worker role's (the launcher gives each child its own role instead)."""
    stack = EmbeddedStack()
    creds = internal_credentials(data_dir)
    users = nats_passwords(creds)
    try:
        if nats_url is None:
            if nats_cluster > 1:
                nodes = start_nats_cluster(data_dir / "nats-cluster", nats_cluster, users)
                stack.servers.extend(nodes)
            else:
                stack.servers.append(start_nats(data_dir / "nats", passwords=users))
            nats_url = with_user(stack.url("nats"), WORKER, users[WORKER])
        if database_url is None:
            stack.servers.append(start_postgres(data_dir / "postgres", password=creds["postgres"]))
            database_url = stack.url("postgres")
        if redis_url is None:
            stack.servers.append(start_valkey(data_dir / "valkey", password=creds["valkey"]))
            redis_url = stack.url("valkey")
    except BaseException:
        stack.stop()
        raise
    return stack, {"nats": nats_url, "database": database_url, "redis": redis_url}
