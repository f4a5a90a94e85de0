"""`make run`'s launcher: embedded servers, migrations, services, demo seed, clean stop."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil

from services.dev.demo import MASTER_EMAIL, MASTER_PASSWORD
from services.dev.embedded import free_port
from services.dev.processes import ROOT
from tests.helpers import wait_until


def _start(data_dir: Path, api_port: int, sim_port: int) -> subprocess.Popen[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("COPYTRADE_")  # the launcher must start its own servers
    }
    env.update(
        {
            "COPYTRADE_DATA_DIR": str(data_dir),
            "COPYTRADE_API_PORT": str(api_port),
            "COPYTRADE_SIM_PORT": str(sim_port),
            "COPYTRADE_SIM_URL": f"http://127.0.0.1:{sim_port}",
            "COPYTRADE_DEMO_FOLLOWERS": "5",
            "COPYTRADE_WORKERS": "2",
        }
    )
    return subprocess.Popen(
        [sys.executable, "-m", "services.dev.launcher"],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )


def _wait_for_banner(process: subprocess.Popen[str], timeout_s: float) -> str:
    assert process.stdout is not None
    seen = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if "Press Ctrl-C to stop." in line:
            return "".join(seen)
    raise AssertionError("launcher did not come up:\n" + "".join(seen))


SERVERS = ("nats-server", "postgres", "valkey-server")


def _server(launcher: int, name: str) -> psutil.Process | None:
    """The embedded server `name` the launcher started (its direct child), if running."""
    for child in psutil.Process(launcher).children():
        try:
            if child.name() == name and child.status() != psutil.STATUS_ZOMBIE:
                return child
        except psutil.NoSuchProcess:
            pass
    return None


def _kill_servers_and_recover(launcher: int, api: httpx.Client) -> None:
    """kill -9 each embedded server the launcher started: it restarts each (reaped, no zombie,
    locks cleared) and /readyz is 200 again."""
    for name in SERVERS:
        old = _server(launcher, name)
        assert old is not None, name
        old.kill()

        def back(name: str = name, old_pid: int = old.pid) -> bool:
            new = _server(launcher, name)
            return new is not None and new.pid != old_pid

        wait_until(back, timeout_s=30, message=f"{name} not restarted by the launcher")
        assert old.pid not in [p.pid for p in psutil.Process(launcher).children()], "zombie"

        def ready() -> bool:
            try:
                return api.get("/readyz").status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout_s=30, message=f"/readyz not ready after {name} restarted")


def _run_once(data_dir: Path, kill_servers: bool = False) -> tuple[int, float, list[int], str]:
    api_port, sim_port = free_port(), free_port()
    process = _start(data_dir, api_port, sim_port)
    try:
        banner = _wait_for_banner(process, 90)
        descendants = [p.pid for p in psutil.Process(process.pid).children(recursive=True)]
        api = httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=10)
        token = api.post(
            "/v1/auth/token", json={"email": MASTER_EMAIL, "password": MASTER_PASSWORD}
        ).json()
        headers = {"authorization": f"Bearer {token['access_token']}"}
        account_id = api.get("/v1/accounts", headers=headers).json()[0]["account_id"]
        if kill_servers:
            _kill_servers_and_recover(process.pid, api)
        order = api.post(
            "/v1/orders",
            headers=headers,
            json={
                "client_order_id": uuid.uuid4().hex,
                "account_id": account_id,
                "symbol": "AAPL",
                "side": "buy",
                "qty": "2",
                "type": "market",
                "time_in_force": "day",
            },
        ).json()

        def replicated() -> dict[str, Any] | None:
            body: dict[str, Any] = api.get(
                f"/v1/orders/{order['order_id']}", headers=headers
            ).json()
            return body if body["status"] == "replicated" else None

        body = wait_until(replicated, timeout_s=20, message="the demo order did not replicate")
        legs = body["legs"]["total"]
        assert api.get("/readyz").status_code == 200
        api.close()
    finally:
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        stop_s = time.monotonic() - started
    return legs, stop_s, descendants, banner


def test_launcher_runs_everything_restarts_servers_and_stops_cleanly(tmp_path: Path) -> None:
    legs, stop_s, descendants, banner = _run_once(tmp_path / "data", kill_servers=True)
    assert MASTER_EMAIL in banner and MASTER_PASSWORD in banner
    assert legs == 5
    assert stop_s < 10, f"stopping took {stop_s:.1f}s"
    # Embedded servers, simulator, API, two replicators, sweeper: at least eight processes …
    assert len(descendants) >= 8

    # … and none of them outlives the launcher (they get a moment to finish exiting).
    def alive() -> list[int]:
        living = []
        for pid in descendants:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    living.append(pid)
            except psutil.NoSuchProcess:
                pass
        return living

    wait_until(lambda: not alive(), timeout_s=5, message="descendants outlived the launcher")
    assert alive() == []

    # A second start on the same data directory reuses the state: demo users still sign in.
    legs_again, _, _, _ = _run_once(tmp_path / "data")
    assert legs_again == 5


def test_a_server_that_keeps_dying_is_restarted_with_backoff_never_given_up(
    tmp_path: Path,
) -> None:
    """Valkey's port is taken by someone else (an outage outside it): every restart dies at
    once. The supervisor keeps restarting it with growing delays (never "stopping everything"),
    and once the port is free again Valkey comes back and stays up."""
    import socket

    import redis

    from services.dev.embedded import start_valkey
    from services.dev.supervisor import RestartBackoff, ServerSupervisor

    server = start_valkey(tmp_path / "valkey")
    supervisor = ServerSupervisor([server], RestartBackoff(base_s=0.2, cap_s=1.0))
    supervisor.start_thread(interval_s=0.05)
    squatter = socket.socket()
    try:
        supervisor.hold("valkey")
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(10)
        squatter.bind(("127.0.0.1", server.port))
        squatter.listen()
        supervisor.release("valkey")
        wait_until(lambda: len(supervisor.restarts.get("valkey", [])) >= 6, timeout_s=30)
        starts = supervisor.restarts["valkey"]
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        assert gaps[0] < 0.6 and gaps[-1] >= 0.9, gaps  # 0.2 s, 0.4 s, … up to the 1 s cap
        assert supervisor._thread is not None and supervisor._thread.is_alive()
        squatter.close()  # the outside cause is gone
        client = redis.Redis(port=server.port, socket_connect_timeout=1)

        def serving() -> bool:
            try:
                return bool(client.ping()) and server.process.poll() is None
            except redis.RedisError:
                return False

        wait_until(serving, timeout_s=30, message="valkey did not come back")
        time.sleep(1.5)  # a client's pace: it stays up (no restart after it is back)
        assert server.process.poll() is None
        client.close()
    finally:
        squatter.close()
        supervisor.stop_thread()
        server.stop()


def test_restart_backoff_doubles_caps_and_forgives_a_healthy_run() -> None:
    from services.dev.supervisor import RestartBackoff

    now = [0.0]
    backoff = RestartBackoff(base_s=0.5, cap_s=4.0, healthy_after_s=60, clock=lambda: now[0])
    for expected in (0.0, 0.5, 1.0, 2.0, 4.0, 4.0):  # dies again right after each restart
        died = now[0]
        if expected:
            assert not backoff.due("pg")
            now[0] = died + expected - 0.01
            assert not backoff.due("pg")
            now[0] = died + expected
        assert backoff.due("pg")
        backoff.started("pg")
        now[0] += 1  # up for a second, then dies again
    now[0] += 120  # a long healthy run: the next death restarts at once
    assert backoff.due("pg")
