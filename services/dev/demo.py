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
from sqlalchemy.ext.asyncio import AsyncEngine

from brokers.registry import SIM
from services.infra.auth import hash_password
from services.infra.crypto import CredentialCipher
from services.infra.db.repositories.accounts import insert_account
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

    names = ["master"] + [f"follower{i:04d}" for i in range(1, followers + 1)]
    keys = {name: _sim_keys(secret, key(name)) for name in names}
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

        await asyncio.gather(*(create(name) for name in names))

    master_id = str(uuid.uuid5(_NAMESPACE, key("user/master")))
    master_account = str(uuid.uuid5(_NAMESPACE, key("account/master")))
    master_email = MASTER_EMAIL if group == "demo" else f"master@{group}.copytrade.dev"
    master_hash = hash_password(MASTER_PASSWORD, password_hash_n)
    follower_hash = hash_password(FOLLOWER_PASSWORD, password_hash_n)
    admin_id = str(uuid.uuid5(_NAMESPACE, "user/admin"))
    async with engine.begin() as conn:
        if await get_user(conn, admin_id) is None:
            await create_user(
                conn, admin_id, ADMIN_EMAIL, hash_password(ADMIN_PASSWORD, password_hash_n), "admin"
            )
        if await get_user(conn, master_id) is None:
            await create_user(conn, master_id, master_email, master_hash, "master")
            key_id, secret_key = keys["master"]
            await insert_account(
                conn,
                master_account,
                master_id,
                SIM.name,
                "demo master",
                cipher.encrypt(master_account, _sim_credentials(key_id, secret_key)),
            )
        account_ids = []
        for index in range(1, followers + 1):
            name = f"follower{index:04d}"
            user_id = str(uuid.uuid5(_NAMESPACE, key(f"user/{name}")))
            account_id = str(uuid.uuid5(_NAMESPACE, key(f"account/{name}")))
            account_ids.append(account_id)
            if await get_user(conn, user_id) is not None:
                continue
            key_id, secret_key = keys[name]
            await create_user(
                conn, user_id, follower_email(index, group), follower_hash, "follower"
            )
            await insert_account(
                conn,
                account_id,
                user_id,
                SIM.name,
                f"demo {name}",
                cipher.encrypt(account_id, _sim_credentials(key_id, secret_key)),
            )
            await insert_subscription(
                conn,
                {
                    "id": str(uuid.uuid5(_NAMESPACE, key(f"subscription/{name}"))),
                    "follower_id": user_id,
                    "master_id": master_id,
                    "account_id": account_id,
                    "sizing": {"mode": "multiplier", "factor": "1"},
                    "caps": {"max_qty": "1000"},
                    "filters": {},
                    "paused": False,
                },
            )
    return DemoSeed(
        master_id=master_id,
        master_account_id=master_account,
        followers=followers,
        master_email=master_email,
        follower_account_ids=tuple(account_ids),
    )
