"""Production mode: no demo, no simulator unless asked (and then behind its admin key), no
docs/OpenAPI/metrics unless enabled; the simulator never re-discloses a secret it holds."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from brokers.sim.app import build_app as build_simulator
from services.api.routers.dashboard import STATIC
from services.dev.launcher import build_children
from services.infra.settings import Settings, SettingsError
from tests.security.conftest import AppFactory, Client

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {
    "COPYTRADE_ENVIRONMENT": "production",
    "COPYTRADE_JWT_SECRET": "x" * 48,
    "COPYTRADE_CREDENTIAL_KEYS": "k1:" + "A" * 43 + "=",
}


def test_production_refuses_a_demo_with_a_clear_error() -> None:
    with pytest.raises(SettingsError, match="production refuses the demo"):
        Settings.from_env({**SECRETS, "COPYTRADE_DEMO_FOLLOWERS": "5"})
    settings = Settings.from_env(SECRETS)
    assert settings.demo_count == 0  # the development default (200) does not apply


def test_the_launcher_exits_on_a_production_demo(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("COPYTRADE_")},
        **SECRETS,
        "COPYTRADE_DEMO_FOLLOWERS": "3",
        "COPYTRADE_DATA_DIR": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-m", "services.dev.launcher"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "production refuses the demo" in done.stderr


def test_production_starts_no_simulator_unless_asked(tmp_path: Path) -> None:
    names = [c.name for c in build_children(Settings.from_env(SECRETS), {}, tmp_path)]
    assert "simulator" not in names and "api" in names
    with pytest.raises(SettingsError, match="SIM_ADMIN_KEY"):
        Settings.from_env({**SECRETS, "COPYTRADE_SIMULATOR": "true"})
    asked = Settings.from_env(
        {**SECRETS, "COPYTRADE_SIMULATOR": "true", "COPYTRADE_SIM_ADMIN_KEY": "k" * 32}
    )
    assert "simulator" in [c.name for c in build_children(asked, {}, tmp_path)]
    development = Settings.from_env({})
    assert "simulator" in [c.name for c in build_children(development, {}, tmp_path)]


def _simulator(admin_key: str | None = None) -> httpx.AsyncClient:
    app = build_simulator(seed=1, admin_key=admin_key)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim")


async def test_simulator_admin_routes_need_the_key_when_it_has_one() -> None:
    async with _simulator("the-admin-key") as sim:
        for method, path in (
            ("POST", "/sim/accounts"),
            ("PUT", "/sim/faults"),
            ("PUT", "/sim/prices"),
            ("GET", "/sim/stats"),
            ("GET", "/sim/orders"),
        ):
            r = await sim.request(method, path, json={})
            assert r.status_code == 401, (method, path, r.text)
            wrong = await sim.request(method, path, json={}, headers={"x-sim-admin-key": "no"})
            assert wrong.status_code == 401
        assert (await sim.get("/healthz")).status_code == 200
        ok = await sim.post(
            "/sim/accounts", json={"cash": "10"}, headers={"x-sim-admin-key": "the-admin-key"}
        )
        assert ok.status_code == 201 and ok.json()["secret_key"]


async def test_simulator_never_answers_a_secret_it_already_holds() -> None:
    async with _simulator() as sim:
        created = (await sim.post("/sim/accounts", json={"cash": "10"})).json()
        known = await sim.post("/sim/accounts", json={"key_id": created["key_id"]})
        assert known.status_code == 409
        assert created["secret_key"] not in known.text
        again = await sim.post(
            "/sim/accounts",
            json={"key_id": created["key_id"], "secret_key": created["secret_key"]},
        )
        assert again.status_code == 200 and "secret_key" not in again.json()
        wrong = await sim.post(
            "/sim/accounts", json={"key_id": created["key_id"], "secret_key": "x"}
        )
        assert wrong.status_code == 409 and created["secret_key"] not in wrong.text


async def test_production_hides_docs_openapi_and_metrics(api_app: AppFactory) -> None:
    async with api_app(environment="production", demo_followers=0) as app:
        client = Client(app, "10.9.9.9")
        for path in ("/docs", "/redoc", "/openapi.json", "/metrics"):
            assert (await client.http.get(path)).status_code == 404, path
        assert (await client.http.get("/healthz")).status_code == 200
    async with api_app(
        environment="production", docs_enabled="true", metrics_enabled="true"
    ) as app:
        client = Client(app, "10.9.9.9")
        assert (await client.http.get("/openapi.json")).status_code == 200
        assert (await client.http.get("/metrics")).status_code == 200


async def test_page_csp_has_no_unsafe_inline_and_answers_say_nosniff(
    api_app: AppFactory,
) -> None:
    async with api_app() as app:
        client = Client(app, "10.9.9.10")
        page = await client.http.get("/")
        csp = page.headers["content-security-policy"]
        assert "'unsafe-inline'" not in csp and "script-src 'self'" in csp
        assert "<style" not in page.text
        assert "<script>" not in page.text  # only <script src=…>
        assert re.search(r"\s(on[a-z]+|style)=", page.text) is None  # no inline handler or style
        assets = sorted(p.relative_to(STATIC) for p in STATIC.rglob("*") if p.is_file())
        assert Path("js/app.js") in assets
        for asset in assets:
            r = await client.http.get(f"/static/{asset}")
            assert r.status_code == 200 and r.headers["x-content-type-options"] == "nosniff"
            if asset.suffix == ".js":  # module scripts need a JavaScript type under nosniff
                assert "javascript" in r.headers["content-type"], (asset, r.headers)
                assert re.search(r"\.(innerHTML|outerHTML)\b|\beval\(", r.text) is None, asset
        for r in (page, await client.http.get("/healthz"), await client.http.get("/v1/copies")):
            assert r.headers["x-content-type-options"] == "nosniff"
