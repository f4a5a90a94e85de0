"""Demo seed for `make run`: one master and N followers, each with a simulator account.

Idempotent: users and accounts are created once; simulator accounts (the simulator keeps state
in memory) are re-created on every start with the same derived keys.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ssl
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from brokers.registry import SIM
from services.infra.auth import hash_password
from services.infra.crypto import CredentialCipher
from services.infra.db.repositories.accounts import insert_account
from services.infra.db.repositories.masters import update_profile
from services.infra.db.repositories.subscriptions import insert_subscription
from services.infra.db.repositories.users import create_user, get_user

MASTER_EMAIL = "master@demo.copytrade.dev"
MASTER_PASSWORD = "demo-master-password"
FOLLOWER_PASSWORD = "demo-follower-password"
ADMIN_EMAIL = "admin@demo.copytrade.dev"
ADMIN_PASSWORD = "demo-admin-password"
_NAMESPACE = uuid.UUID("a3c9f0f2-5b1e-4c8e-9d2a-1f7e6b5c4d3a")


def follower_email(index: int, group: str = "demo") -> str:
    return f"follower{index:04d}@{group}.copytrade.dev"


@dataclass(frozen=True)
class DemoSeed:
    master_id: str
    master_account_id: str
    followers: int
    master_email: str
    follower_account_ids: tuple[str, ...]


def _sim_keys(secret: str, name: str) -> tuple[str, str]:
    digest = hmac.new(secret.encode(), name.encode(), hashlib.sha256).hexdigest()
    return "PKDEMO" + hashlib.sha256(name.encode()).hexdigest()[:14].upper(), digest


def _sim_credentials(key_id: str, secret_key: str) -> dict[str, Any]:
    """Credentials checked by the simulator's descriptor, as the API checks them."""
    return SIM.parse_credentials({"key_id": key_id, "secret_key": secret_key}).model_dump()


async def _create_sim_accounts(
    sim_url: str, keys: dict[str, tuple[str, str]], ca_file: str | None = None
) -> None:
    """The simulator keeps accounts in memory: (re)create each with its derived keys."""
    verify = ssl.create_default_context(cafile=ca_file) if ca_file else True
    async with httpx.AsyncClient(base_url=sim_url, timeout=10, verify=verify) as sim:
        semaphore = asyncio.Semaphore(50)

        async def create(name: str) -> None:
            key_id, secret_key = keys[name]
            async with semaphore:
                response = await sim.post(
                    "/sim/accounts",
                    json={
                        "cash": "1000000" if name == "master" else "100000",
                        "key_id": key_id,
                        "secret_key": secret_key,
                    },
                )
                response.raise_for_status()

        await asyncio.gather(*(create(name) for name in keys))


async def _seed_account(
    conn: AsyncConnection,
    cipher: CredentialCipher,
    user: tuple[str, str, str, str],
    account: tuple[str, str],
    keys: tuple[str, str],
) -> bool:
    """A user (id, email, password hash, role) with one simulator account (id, label), once;
    False when the user existed already."""
    user_id, email, password_hash, role = user
    if await get_user(conn, user_id) is not None:
        return False
    account_id, label = account
    await create_user(conn, user_id, email, password_hash, role)
    await insert_account(
        conn,
        account_id,
        user_id,
        SIM.name,
        label,
        cipher.encrypt(account_id, _sim_credentials(*keys)),
    )
    return True


def _demo_subscription(
    subscription_id: str, follower_id: str, master_id: str, account_id: str
) -> dict[str, Any]:
    return {
        "id": subscription_id,
        "follower_id": follower_id,
        "master_id": master_id,
        "account_id": account_id,
        "sizing": {"mode": "multiplier", "factor": "1"},
        "caps": {"max_qty": "1000"},
        "filters": {},
        "paused": False,
        "on_master_rejected": "close",
    }


async def seed(
    engine: AsyncEngine,
    cipher: CredentialCipher,
    sim_url: str,
    secret: str,
    followers: int,
    password_hash_n: int,
    group: str = "demo",
    ca_file: str | None = None,
) -> DemoSeed:
    """Seed one master and `followers` followers; `group` names a separate set (benchmarks)."""

    def key(name: str) -> str:
        return name if group == "demo" else f"{group}/{name}"

    def uid(kind: str, name: str) -> str:
        return str(uuid.uuid5(_NAMESPACE, key(f"{kind}/{name}")))

    names = ["master"] + [f"follower{i:04d}" for i in range(1, followers + 1)]
    keys = {name: _sim_keys(secret, key(name)) for name in names}
    await _create_sim_accounts(sim_url, keys, ca_file)
    master_id, master_account = uid("user", "master"), uid("account", "master")
    master_email = MASTER_EMAIL if group == "demo" else f"master@{group}.copytrade.dev"
    follower_hash = hash_password(FOLLOWER_PASSWORD, password_hash_n)
    admin_id = str(uuid.uuid5(_NAMESPACE, "user/admin"))
    async with engine.begin() as conn:
        if await get_user(conn, admin_id) is None:
            await create_user(
                conn, admin_id, ADMIN_EMAIL, hash_password(ADMIN_PASSWORD, password_hash_n), "admin"
            )
        master_hash = hash_password(MASTER_PASSWORD, password_hash_n)
        master = (master_id, master_email, master_hash, "master")
        await _seed_account(conn, cipher, master, (master_account, "demo master"), keys["master"])
        await update_profile(conn, master_id, {"copy_access": "open"})  # no invites needed
        account_ids = []
        for index in range(1, followers + 1):
            name = f"follower{index:04d}"
            user_id, account_id = uid("user", name), uid("account", name)
            account_ids.append(account_id)
            user = (user_id, follower_email(index, group), follower_hash, "follower")
            if await _seed_account(conn, cipher, user, (account_id, f"demo {name}"), keys[name]):
                ids = (uid("subscription", name), user_id, master_id, account_id)
                await insert_subscription(conn, _demo_subscription(*ids))
    return DemoSeed(
        master_id=master_id,
        master_account_id=master_account,
        followers=followers,
        master_email=master_email,
        follower_account_ids=tuple(account_ids),
    )
