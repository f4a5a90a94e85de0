"""`make run`: the whole stack on one machine.

Starts NATS (JetStream), PostgreSQL and Valkey from pinned wheels when their URLs are not
configured, runs the migrations, starts the simulator, the ingest API, the replicator pool and
the sweeper, seeds the demo and prints where everything is. Ctrl-C or SIGTERM stops it all.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import ssl
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from services.dev.credentials import internal_credentials, nats_passwords, role_env
from services.dev.demo import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    FOLLOWER_PASSWORD,
    MASTER_EMAIL,
    MASTER_PASSWORD,
    follower_email,
    seed,
)
from services.dev.embedded import EmbeddedStack, die_with_parent, start_stack
from services.dev.processes import Child, stop_all
from services.dev.supervisor import RestartBackoff, ServerSupervisor
from services.infra import bus, webhook_bus
from services.infra.crypto import CredentialCipher
from services.infra.db.engine import make_engine
from services.infra.db.migrate import upgrade
from services.infra.logs import setup_logging
from services.infra.settings import Settings, SettingsError, development_secrets

log = logging.getLogger("copytrade.launcher")


def _wait_http(
    url: str, timeout_s: float, children: list[Child], ca_file: str | None = None
) -> None:
    """Until `url` answers 200 (an https simulator: trusting `ca_file`, which it writes at
    start)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for child in children:
            if not child.alive():
                raise RuntimeError(f"{child.name} exited during start-up (see its log)")
        try:
            verify = ssl.create_default_context(cafile=ca_file) if ca_file else True
            if httpx.get(url, timeout=1, verify=verify).status_code == 200:
                return
        except (httpx.HTTPError, OSError):  # OSError: the CA file is not written yet
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout_s}s")


async def _prepare(settings: Settings, env: dict[str, str]) -> None:
    nc = await bus.connect(env["COPYTRADE_NATS_URL"], "copytrade-launcher")
    try:
        js = nc.jetstream()
        started = settings.model_copy(update={"nats_url": env["COPYTRADE_NATS_URL"]})
        replicas = started.stream_replicas
        await bus.ensure_stream(js, replicas)
        await webhook_bus.ensure_stream(js, replicas)
        await bus.ensure_consumer(js, settings.consumer_ack_wait_s, settings.max_deliver)
    finally:
        await bus.close(nc)


async def _seed(settings: Settings, env: dict[str, str]) -> None:
    engine = make_engine(env["COPYTRADE_DATABASE_URL"], pool_size=2, max_overflow=0)
    try:
        await seed(
            engine,
            CredentialCipher.from_setting(env["COPYTRADE_CREDENTIAL_KEYS"]),
            settings.sim_url,
            env["COPYTRADE_JWT_SECRET"],
            settings.demo_count,
            settings.password_hash_n,
            ca_file=settings.broker_ca_file,
        )
    finally:
        await engine.dispose()


def metrics_ports(base: int, workers: int) -> dict[str, int]:
    """Each process its own metrics port from `base` (0: none): replicators base+1 …
    base+workers, then the sweeper, the poller and the notifier. (The API serves /metrics on
    its own port.)"""
    if not base:
        return {}
    ports = {f"replicator-{index + 1}": base + 1 + index for index in range(workers)}
    ports["sweeper"] = base + workers + 1
    ports["poller"] = base + workers + 2
    ports["notifier"] = base + workers + 3
    return ports


def build_children(
    settings: Settings,
    env: dict[str, str],
    log_dir: Path,
    nats_users: dict[str, str] | None = None,
) -> list[Child]:
    """`nats_users`: the embedded NATS's role passwords; each child gets only its own role's."""
    ports = metrics_ports(settings.metrics_port, settings.workers)

    def child(name: str, module: str) -> Child:
        own = {**env, "COPYTRADE_METRICS_PORT": str(ports.get(name, 0))}
        if nats_users is not None:
            role = name if name in ("api", "simulator") else "worker"
            own.update(role_env(role, env.get("COPYTRADE_NATS_URL", ""), nats_users))
        return Child(name, module, own, log_dir / f"{name}.log")

    children = [child("api", "services.api")]
    if settings.simulator_enabled:  # production: only when asked (COPYTRADE_SIMULATOR=true)
        children.insert(0, child("simulator", "brokers.sim"))
    for index in range(settings.workers):
        children.append(child(f"replicator-{index + 1}", "services.worker.replicator"))
    children.append(child("sweeper", "services.worker.sweeper"))
    children.append(child("poller", "services.worker.poller"))
    children.append(child("notifier", "services.worker.notifier"))
    return children


def _base_env(settings: Settings, data_dir: Path) -> dict[str, str]:
    """The children's environment: ours, with development secrets where none are set."""
    env = dict(os.environ)
    if not (settings.jwt_secret and settings.credential_keys):
        if settings.environment != "development":
            raise SettingsError("set COPYTRADE_JWT_SECRET and COPYTRADE_CREDENTIAL_KEYS")
        for key, value in development_secrets(data_dir).items():
            env.setdefault(key, value)
    return env


def _banner(settings: Settings, api_url: str, nats: str, data_dir: Path, log_dir: Path) -> str:
    demo = (
        f"  demo admin     {ADMIN_EMAIL} / {ADMIN_PASSWORD}\n"
        f"  demo master    {MASTER_EMAIL} / {MASTER_PASSWORD}\n"
        f"  demo followers {settings.demo_count} "
        f"({follower_email(1)} … / {FOLLOWER_PASSWORD})\n"
        if settings.demo_count
        else ""
    )
    simulator = settings.sim_url if settings.simulator_enabled else "not started"
    return (
        f"\ncopytrade is running\n"
        f"  ingest API   {api_url}\n"
        f"  simulator    {simulator}\n"
        f"  NATS         {nats}\n"
        f"  replicators  {settings.workers} processes, plus 1 sweeper, 1 broker poller and "
        "1 webhook notifier\n"
        f"  data         {data_dir} (logs in {log_dir})\n"
        f"{demo}"
        f"Press Ctrl-C to stop.\n"
    )


def _supervise(
    children: list[Child], stopping: Callable[[], bool], servers: ServerSupervisor
) -> None:
    """Restart any embedded server or child that exits, until asked to stop, with a capped
    exponential delay between deaths in a row (services/dev/supervisor.py, RestartBackoff): a
    service that dies because a dependency is down comes back when it is, and a long outage
    never stops the stack. Servers come back on the same port and data."""
    backoff = RestartBackoff()
    for child in children:
        backoff.started(child.name)
    while not stopping():
        time.sleep(0.2)
        servers.check()
        for child in children:
            if stopping() or child.alive() or not backoff.due(child.name):
                continue
            log.warning(
                "%s exited (%s); restarting",
                child.name,
                child.process.returncode if child.process else "?",
            )
            backoff.started(child.name)
            child.start()


def run(settings: Settings) -> int:
    data_dir = settings.data_dir.resolve()
    log_dir = data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = _base_env(settings, data_dir)
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    stack = EmbeddedStack()
    children: list[Child] = []
    try:
        stack, urls = start_stack(
            data_dir,
            nats_url=settings.nats_url,
            database_url=settings.database_url,
            redis_url=settings.redis_url,
            nats_cluster=settings.nats_cluster,
        )
        env.update(
            {
                "COPYTRADE_NATS_URL": urls["nats"],
                "COPYTRADE_DATABASE_URL": urls["database"],
                "COPYTRADE_REDIS_URL": urls["redis"],
                "COPYTRADE_SIM_URL": settings.sim_url,
            }
        )
        upgrade(urls["database"])
        asyncio.run(_prepare(settings, env))
        users = None if settings.nats_url else nats_passwords(internal_credentials(data_dir))
        children = build_children(settings, env, log_dir, users)
        for child in children:
            child.start()
        api_url = f"http://{settings.api_host}:{settings.api_port}"
        if settings.simulator_enabled:
            _wait_http(f"{settings.sim_url}/healthz", 20, children, settings.broker_ca_file)
        _wait_http(f"{api_url}/healthz", 30, children)
        if settings.demo_count:
            asyncio.run(_seed(settings, env))
        print(_banner(settings, api_url, urls["nats"], data_dir, log_dir), flush=True)
        _supervise(children, lambda: stopping, ServerSupervisor(stack.servers))
        return 0
    finally:
        print("stopping …", flush=True)
        stop_all(children)
        stack.stop()
        print("stopped", flush=True)


def main() -> None:
    setup_logging()
    die_with_parent()  # if `make` (or a supervisor) dies, we still stop everything we started
    try:
        sys.exit(run(Settings.from_env()))
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
