"""A linked account's lifecycle: new label or credentials (checked, then verified at the
broker), removal refused while copies are open, key rotation of every stored credential."""

from __future__ import annotations

import asyncio
import base64
import os
import uuid

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.admin import rotate_keys
from services.infra.crypto import CredentialCipher
from services.infra.db.engine import make_engine
from services.infra.db.migrate import upgrade
from services.infra.db.repositories.accounts import insert_account
from services.infra.db.repositories.users import create_user
from services.infra.settings import Settings
from tests.helpers import create_database
from tests.security.conftest import AppFactory, Client, random_address


async def test_patch_changes_the_label_and_verifies_new_credentials(
    api_app: AppFactory, simulator: str
) -> None:
    async with api_app() as app:
        client = Client(app, random_address())
        _, token = await client.user("follower")
        account = await client.sim_account(token, simulator)
        path, auth = f"/v1/accounts/{account}", client.auth(token)
        r = await client.http.patch(path, headers=auth, json={"label": "renamed"})
        assert r.status_code == 200 and r.json()["label"] == "renamed"
        for credentials in (
            {"key_id": "PK\r\nX-Evil: 1", "secret_key": "s"},  # control characters
            {"key_id": "PKNOSUCHKEY0000000", "secret_key": "wrong-secret"},  # the broker says no
        ):
            r = await client.http.patch(path, headers=auth, json={"credentials": credentials})
            assert r.status_code == 422, r.text
            assert r.json()["error"]["code"] == "invalid_credentials"
        async with httpx.AsyncClient(base_url=simulator) as sim:
            keys = (await sim.post("/sim/accounts", json={"cash": "5"})).json()
        fresh = {"key_id": keys["key_id"], "secret_key": keys["secret_key"]}
        r = await client.http.patch(path, headers=auth, json={"credentials": fresh})
        assert r.status_code == 200 and keys["secret_key"] not in r.text
        _, stranger = await client.user("follower")
        r = await client.http.patch(path, headers=client.auth(stranger), json={"label": "x"})
        assert r.status_code == 404


async def test_delete_is_refused_while_copies_are_open(api_app: AppFactory, simulator: str) -> None:
    async with api_app() as app:
        client = Client(app, random_address())
        master_id, _ = await client.user("master", copy_access="open")
        _, token = await client.user("follower")
        account = await client.sim_account(token, simulator)
        auth = client.auth(token)
        r = await client.http.post(
            "/v1/subscriptions",
            headers=auth,
            json={
                "master_id": master_id,
                "account_id": account,
                "sizing": {"mode": "fixed", "qty": "1"},
            },
        )
        subscription = r.json()["subscription_id"]
        _, stranger = await client.user("follower")
        r = await client.http.delete(f"/v1/accounts/{account}", headers=client.auth(stranger))
        assert r.status_code == 404
        r = await client.http.delete(f"/v1/accounts/{account}", headers=auth)
        assert r.status_code == 409 and r.json()["error"]["code"] == "account_in_use"
        await client.http.delete(f"/v1/subscriptions/{subscription}", headers=auth)
        assert (
            await client.http.delete(f"/v1/accounts/{account}", headers=auth)
        ).status_code == 204
        listed = (await client.http.get("/v1/accounts", headers=auth)).json()
        assert account not in [a["account_id"] for a in listed]
        r = await client.http.post(f"/v1/accounts/{account}/halt", headers=auth)
        assert r.status_code == 404


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


async def test_rotation_reencrypts_every_credential_under_the_newest_key(
    servers: dict[str, str], service_env: dict[str, str]
) -> None:
    # A database of its own: rotation touches every account, other tests' included.
    database = await create_database(servers["database"])
    await asyncio.to_thread(upgrade, database)
    engine = make_engine(database, pool_size=2, max_overflow=0)
    try:
        await _rotate(engine, database, service_env["COPYTRADE_JWT_SECRET"])
    finally:
        await engine.dispose()


async def _rotate(engine: AsyncEngine, database: str, jwt_secret: str) -> None:
    old = f"old{uuid.uuid4().hex[:6]}:{_key()}"
    new = f"new{uuid.uuid4().hex[:6]}:{_key()}"
    old_cipher = CredentialCipher.from_setting(old)
    user_id = str(uuid.uuid4())
    accounts = {str(uuid.uuid4()): {"key_id": f"PK{i}", "secret_key": f"s{i}"} for i in range(3)}
    async with engine.begin() as conn:
        await create_user(conn, user_id, f"rot-{user_id}@security.test", "x", "follower")
        for account_id, credentials in accounts.items():
            sealed = old_cipher.encrypt(account_id, credentials)
            await insert_account(conn, account_id, user_id, "sim", "r", sealed)
    settings = Settings.from_env(
        {
            "COPYTRADE_DATABASE_URL": database,
            "COPYTRADE_JWT_SECRET": jwt_secret,
            "COPYTRADE_CREDENTIAL_KEYS": f"{new},{old}",
        }
    )
    rotated, total = await rotate_keys(settings)
    assert (rotated, total) == (3, 3)
    new_only = CredentialCipher.from_setting(new)
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT id, credentials FROM accounts WHERE user_id = :u"), {"u": user_id}
            )
        ).all()
    assert len(rows) == 3
    for account_id, sealed in rows:
        assert not new_only.needs_rotation(bytes(sealed))
        assert new_only.decrypt(str(account_id), bytes(sealed)) == accounts[str(account_id)]
    assert (await rotate_keys(settings))[0] == 0  # nothing left under an older key


async def test_linking_verifies_the_credentials_at_the_broker_and_stores_nothing_it_refuses(
    api_app: AppFactory, simulator: str
) -> None:
    async with httpx.AsyncClient(base_url=simulator) as sim:
        keys = (await sim.post("/sim/accounts", json={"cash": "5"})).json()
    for credentials in (
        {"key_id": "PKNOSUCHKEY0000000", "secret_key": "wrong-secret"},  # unknown key
        {"key_id": keys["key_id"], "secret_key": "wrong-" + keys["secret_key"]},  # wrong secret
    ):
        async with api_app() as app:
            client = Client(app, random_address())
            _, token = await client.user("follower")
            body = {"broker": "sim", "label": "bad", "credentials": credentials}
            r = await client.http.post("/v1/accounts", headers=client.auth(token), json=body)
            assert r.status_code == 422, r.text
            assert r.json()["error"]["code"] == "invalid_credentials"
            assert credentials["secret_key"] not in r.text
            assert (await client.http.get("/v1/accounts", headers=client.auth(token))).json() == []
    good = {"key_id": keys["key_id"], "secret_key": keys["secret_key"]}
    async with api_app() as app:
        client = Client(app, random_address())
        _, token = await client.user("follower")
        linked = await client.sim_account(token, simulator)
    # A broker that does not answer: 503 unavailable with Retry-After, nothing stored.
    async with api_app(SIM_URL="http://127.0.0.1:9") as app:
        client = Client(app, random_address())
        auth = client.auth(token)
        body = {"broker": "sim", "label": "down", "credentials": good}
        r = await client.http.post("/v1/accounts", headers=auth, json=body)
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "unavailable" and "retry-after" in r.headers
        r = await client.http.patch(
            f"/v1/accounts/{linked}", headers=auth, json={"credentials": good}
        )
        assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable", r.text
        listed = (await client.http.get("/v1/accounts", headers=auth)).json()
        assert [a["account_id"] for a in listed] == [linked]
