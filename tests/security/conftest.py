"""The security suite: the ingest API in-process (real PostgreSQL, Redis and NATS from the
session's servers) behind an httpx ASGI transport, so each test chooses the client address a
request comes from; a real simulator process where a broker must answer."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.api.app import build_app
from services.dev.embedded import free_port
from services.dev.processes import Child, stop_all
from services.infra.settings import Settings
from tests.helpers import wait_http

PASSWORD = "correct horse battery"


def random_address() -> str:
    """A documentation-range address no other test uses (per-address counters are shared)."""
    raw = os.urandom(3)
    return f"10.{raw[0]}.{raw[1]}.{raw[2] or 1}"


@pytest.fixture(scope="session")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "COPYTRADE_SIM_PORT": str(port)}
    env.pop("COPYTRADE_SIM_ADMIN_KEY", None)
    log = Path(tmp_path_factory.mktemp("security-sim")) / "simulator.log"
    child = Child("simulator", "brokers.sim", env, log)
    child.start()
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", 30, [child])
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_all([child])


def settings_for(
    servers: dict[str, str], service_env: dict[str, str], sim_url: str, **overrides: str
) -> Settings:
    env = {
        **service_env,
        "COPYTRADE_NATS_URL": servers["nats"],
        "COPYTRADE_PASSWORD_HASH_N": "1024",
        "COPYTRADE_SIM_URL": sim_url,
        "COPYTRADE_ALLOWED_ORIGINS": "http://testserver",
    }
    env.update({f"COPYTRADE_{name.upper()}": value for name, value in overrides.items()})
    return Settings.from_env(env)


class Client:
    """An httpx client of the in-process API, from one client address."""

    def __init__(self, app: FastAPI, address: str) -> None:
        transport = httpx.ASGITransport(app=app, client=(address, 40000))
        self.http = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        self.address = address

    @staticmethod
    def auth(token: str) -> dict[str, str]:
        return {"authorization": f"Bearer {token}"}

    async def user(self, role: str, *, copy_access: str | None = None) -> tuple[str, str]:
        """Register and sign in: (user_id, token); masters optionally get a copy access."""
        email = f"{role}-{os.urandom(6).hex()}@security.test"
        body = {"email": email, "password": PASSWORD, "role": role}
        r = await self.http.post("/v1/auth/register", json=body)
        assert r.status_code == 201, r.text
        user_id: str = r.json()["user_id"]
        r = await self.http.post("/v1/auth/token", json={"email": email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        token: str = r.json()["access_token"]
        if copy_access is not None:
            r = await self.http.patch(
                "/v1/masters/me", headers=self.auth(token), json={"copy_access": copy_access}
            )
            assert r.status_code == 200, r.text
        return user_id, token

    async def sim_account(self, token: str, sim_url: str) -> str:
        async with httpx.AsyncClient(base_url=sim_url) as sim:
            keys = (await sim.post("/sim/accounts", json={"cash": "100000"})).json()
        r = await self.http.post(
            "/v1/accounts",
            headers=self.auth(token),
            json={
                "broker": "sim",
                "label": "sim",
                "credentials": {"key_id": keys["key_id"], "secret_key": keys["secret_key"]},
            },
        )
        assert r.status_code == 201, r.text
        account_id: str = r.json()["account_id"]
        return account_id


AppFactory = Callable[..., AbstractAsyncContextManager[FastAPI]]


@pytest.fixture
def api_app(servers: dict[str, str], service_env: dict[str, str], simulator: str) -> AppFactory:
    """`async with api_app(**settings) as app`: the API with its lifespan running."""

    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[FastAPI]:
        settings = settings_for(
            servers, service_env, simulator, **{k: str(v) for k, v in overrides.items()}
        )
        app = build_app(settings)
        async with app.router.lifespan_context(app):
            yield app

    return start
