"""Test helpers: eventually(), and a Stack of real service processes on free ports."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import httpx

from services.dev.embedded import ServerProcess, free_port, start_nats
from services.dev.processes import Child, stop_all
from services.infra.db.migrate import upgrade

T = TypeVar("T")


async def create_database(url: str) -> str:
    """A fresh database on the server behind `url`; returns its URL."""
    from sqlalchemy.ext.asyncio import create_async_engine

    name = "copytrade_test_" + os.urandom(6).hex()
    admin = create_async_engine(url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    await admin.dispose()
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


async def eventually(
    probe: Callable[[], Awaitable[T]],
    *,
    timeout_s: float = 20.0,
    interval_s: float = 0.1,
    message: str = "condition not reached",
) -> T:
    """Call `probe` until it returns a truthy value (returned) or the time runs out."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval_s)
    raise AssertionError(f"{message} within {timeout_s}s (last value: {last!r})")


class Untouchable:
    """A collaborator the code under test must not use: any attribute access fails the test.

    Passed where a constructor needs a dependency the tested path should never reach, so the
    test states what it depends on (everything else) instead of handing over `None`s."""

    def __init__(self, what: str) -> None:
        self._what = what

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the code under test used {self._what}.{name}")

    def __repr__(self) -> str:
        return f"Untouchable({self._what!r})"


def wait_until(
    probe: Callable[[], T],
    *,
    timeout_s: float = 20.0,
    interval_s: float = 0.1,
    message: str = "condition not reached",
) -> T:
    """eventually() for synchronous code: call `probe` until it returns a truthy value."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"{message} within {timeout_s}s (last value: {last!r})")


def listening(port: int) -> bool:
    """Some process has a listening socket on loopback `port` (/proc/net/tcp*: state 0A)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                return True
    return False


def wait_http(url: str, timeout_s: float, children: list[Child]) -> None:
    def up() -> bool:
        for child in children:
            if not child.alive():
                log = child.log_path.read_text()[-3000:] if child.log_path else ""
                raise RuntimeError(f"{child.name} exited during start-up:\n{log}")
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(up, timeout_s=timeout_s, interval_s=0.05, message=f"{url} not up")


@dataclass
class Stack:
    """Simulator, ingest API, replicators and sweeper as real processes (own NATS server)."""

    base_env: dict[str, str]
    log_dir: Path
    workers: int = 2
    overrides: dict[str, str] = field(default_factory=dict)
    children: list[Child] = field(default_factory=list)
    nats: ServerProcess | None = None
    api_url: str = ""
    sim_url: str = ""
    env: dict[str, str] = field(default_factory=dict)
    _worker_count: int = 0

    def start(self) -> Stack:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if "COPYTRADE_NATS_URL" not in self.base_env:
            self.nats = start_nats(self.log_dir / "nats")
        # Each stack gets its own database: another stack's sweeper must never see our legs.
        database = asyncio.run(create_database(self.base_env["COPYTRADE_DATABASE_URL"]))
        upgrade(database)
        self.base_env = {**self.base_env, "COPYTRADE_DATABASE_URL": database}
        api_port, sim_port = free_port(), free_port()
        self.api_url = f"http://127.0.0.1:{api_port}"
        self.sim_url = f"http://127.0.0.1:{sim_port}"
        self.env = {
            **os.environ,
            **self.base_env,
            "COPYTRADE_API_PORT": str(api_port),
            "COPYTRADE_SIM_PORT": str(sim_port),
            "COPYTRADE_SIM_URL": self.sim_url,
            "COPYTRADE_PASSWORD_HASH_N": "1024",
            **self.overrides,
        }
        if self.nats is not None:
            self.env["COPYTRADE_NATS_URL"] = self.nats.url
        self.children = [
            Child("simulator", "brokers.sim", self.env, self.log_dir / "simulator.log"),
            Child("api", "services.api", self.env, self.log_dir / "api.log"),
            Child("sweeper", "services.worker.sweeper", self.env, self.log_dir / "sweeper.log"),
            Child("poller", "services.worker.poller", self.env, self.log_dir / "poller.log"),
            Child("notifier", "services.worker.notifier", self.env, self.log_dir / "notifier.log"),
        ]
        for child in self.children:
            child.start()
        wait_http(f"{self.sim_url}/healthz", 30, self.children)
        wait_http(f"{self.api_url}/healthz", 30, self.children)
        for _ in range(self.workers):
            self.start_worker()
        return self

    def start_worker(self, extra_env: dict[str, str] | None = None) -> Child:
        """Another replicator (its own process group); `extra_env` e.g. its own data dir."""
        self._worker_count += 1
        child = Child(
            f"replicator-{self._worker_count}",
            "services.worker.replicator",
            {**self.env, **(extra_env or {})},
            self.log_dir / f"replicator-{self._worker_count}.log",
        )
        child.start()
        self.children.append(child)
        return child

    def workers_alive(self) -> list[Child]:
        return [c for c in self.children if c.name.startswith("replicator") and c.alive()]

    def stop(self) -> None:
        stop_all(self.children)
        if self.nats is not None:
            self.nats.stop()


class Api:
    """A thin test client of the public API (and the simulator's admin endpoints)."""

    def __init__(self, api_url: str, sim_url: str) -> None:
        self.http = httpx.AsyncClient(base_url=api_url, timeout=30)
        self.sim = httpx.AsyncClient(base_url=sim_url, timeout=30)
        self.sim_keys: dict[str, tuple[str, str]] = {}  # simulator account id → keys

    async def aclose(self) -> None:
        await self.http.aclose()
        await self.sim.aclose()

    @staticmethod
    def auth(token: str) -> dict[str, str]:
        return {"authorization": f"Bearer {token}"}

    async def user(
        self, role: str, email: str | None = None, copy_access: str = "open"
    ) -> tuple[str, str]:
        """Register a user and sign in: (user_id, access token). Password: "correct horse".
        A master's copy access is set to `copy_access` (open: anyone may follow without an
        invite, as these tests' followers do)."""
        email = email or f"{role}-{os.urandom(6).hex()}@example.test"
        response = await self.http.post(
            "/v1/auth/register", json={"email": email, "password": "correct horse", "role": role}
        )
        assert response.status_code == 201, response.text
        user_id = response.json()["user_id"]
        response = await self.http.post(
            "/v1/auth/token", json={"email": email, "password": "correct horse"}
        )
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        if role == "master" and copy_access != "invite":
            response = await self.http.patch(
                "/v1/masters/me", headers=self.auth(token), json={"copy_access": copy_access}
            )
            assert response.status_code == 200, response.text
        return user_id, token

    async def sim_account(self, token: str, cash: str = "1000000") -> tuple[str, str]:
        """A simulator account linked through the API: (our account_id, simulator account id)."""
        sim = (await self.sim.post("/sim/accounts", json={"cash": cash})).json()
        self.sim_keys[sim["account_id"]] = (sim["key_id"], sim["secret_key"])
        response = await self.http.post(
            "/v1/accounts",
            headers=self.auth(token),
            json={
                "broker": "sim",
                "label": "sim",
                "credentials": {"key_id": sim["key_id"], "secret_key": sim["secret_key"]},
            },
        )
        assert response.status_code == 201, response.text
        return response.json()["account_id"], sim["account_id"]

    async def follower(
        self,
        master_id: str,
        sizing: dict[str, Any],
        caps: dict[str, Any] | None = None,
        filters: dict[str, Any] | None = None,
        cash: str = "1000000",
        **settings: Any,
    ) -> dict[str, str]:
        """A new follower with a simulator account subscribed to `master_id`; `settings`: any
        other field of the subscription (e.g. on_master_rejected)."""
        user_id, token = await self.user("follower")
        account_id, sim_account_id = await self.sim_account(token, cash=cash)
        body: dict[str, Any] = {"master_id": master_id, "account_id": account_id, "sizing": sizing}
        if caps:
            body["caps"] = caps
        if filters:
            body["filters"] = filters
        body.update(settings)
        response = await self.http.post("/v1/subscriptions", headers=self.auth(token), json=body)
        assert response.status_code == 201, response.text
        return {
            "user_id": user_id,
            "token": token,
            "account_id": account_id,
            "sim_account_id": sim_account_id,
        }

    async def order(self, token: str, account_id: str, **fields: Any) -> httpx.Response:
        body = {
            "client_order_id": os.urandom(8).hex(),
            "account_id": account_id,
            "symbol": "AAPL",
            "side": "buy",
            "qty": "10",
            "type": "market",
            "time_in_force": "day",
            **fields,
        }
        return await self.http.post("/v1/orders", headers=self.auth(token), json=body)

    async def subscribe(
        self,
        token: str,
        master_id: str,
        account_id: str,
        sizing: dict[str, Any],
        caps: dict[str, Any] | None = None,
    ) -> None:
        body: dict[str, Any] = {
            "master_id": master_id,
            "account_id": account_id,
            "sizing": sizing,
            "caps": caps or {},
        }
        response = await self.http.post("/v1/subscriptions", headers=self.auth(token), json=body)
        assert response.status_code == 201, response.text

    async def settled(self, token: str, order_id: str, timeout_s: float = 30) -> dict[str, Any]:
        """Wait until every leg of the order has settled; return the order summary."""

        async def probe() -> dict[str, Any] | None:
            r = await self.http.get(f"/v1/orders/{order_id}", headers=self.auth(token))
            if r.status_code == 503:
                return None  # a dependency coming back (chaos tests): ask again
            body: dict[str, Any] = r.json()
            master_done = body["master_execution"] is None or body["master_execution"][
                "status"
            ] not in ("submitting", "unknown", "retrying")
            return body if body["status"] == "replicated" and master_done else None

        return await eventually(probe, timeout_s=timeout_s, message=f"order {order_id} unsettled")

    async def copy_of(self, follower: dict[str, str], order_id: str) -> dict[str, Any]:
        rows = (
            await self.http.get(
                "/v1/copies", headers=self.auth(follower["token"]), params={"order_id": order_id}
            )
        ).json()
        assert len(rows) == 1, rows
        row: dict[str, Any] = rows[0]
        return row

    async def position(self, sim_account_id: str, symbol: str) -> Decimal:
        """Signed position of a simulator account, from its filled orders."""
        total = Decimal(0)
        for o in await self.sim_orders():
            if o["account_id"] == sim_account_id and o["symbol"] == symbol:
                filled = Decimal(o["filled_qty"])
                total += filled if o["side"] == "buy" else -filled
        return total

    async def sim_orders(self) -> list[dict[str, Any]]:
        response = await self.sim.get("/sim/orders")
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()
        return result
