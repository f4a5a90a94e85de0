"""Sign-in and sign-up throttles, and password hashing."""

from __future__ import annotations

import asyncio
import os
import uuid

from sqlalchemy.ext.asyncio import AsyncEngine

from services.infra.auth import OWASP_SCRYPT_N, hash_password, verify_password
from services.infra.db.repositories.users import create_user, get_user_by_email
from tests.security.conftest import PASSWORD, AppFactory, Client, random_address


async def _registered(client: Client) -> str:
    email = f"owner-{os.urandom(6).hex()}@security.test"
    r = await client.http.post(
        "/v1/auth/register", json={"email": email, "password": PASSWORD, "role": "follower"}
    )
    assert r.status_code == 201
    return email


async def test_parallel_attempts_are_counted_before_they_are_evaluated(
    api_app: AppFactory,
) -> None:
    async with api_app(login_attempts_per_5min=20) as app:
        # The Valkey pool's connections are opened first (60 at once from another address and
        # email): on a loaded machine some first connects time out, and the throttle then
        # fails open to local counters for those calls (by design), which would blur the count.
        warm = Client(app, random_address())
        other = await _registered(warm)
        await asyncio.gather(
            *(
                warm.http.post("/v1/auth/token", json={"email": other, "password": "wrong!"})
                for _ in range(60)
            )
        )
        attacker = Client(app, random_address())
        email = await _registered(attacker)
        answers = await asyncio.gather(
            *(
                attacker.http.post("/v1/auth/token", json={"email": email, "password": "wrong!"})
                for _ in range(60)
            )
        )
        statuses = [r.status_code for r in answers]
        assert statuses.count(401) <= 20 and statuses.count(429) >= 40, statuses
        limited = [r for r in answers if r.status_code == 429]
        assert all(int(r.headers["retry-after"]) >= 1 for r in limited)


async def test_an_attacker_elsewhere_cannot_lock_the_owner_out(api_app: AppFactory) -> None:
    async with api_app(login_attempts_per_5min=5) as app:
        attacker, owner = Client(app, random_address()), Client(app, random_address())
        email = await _registered(owner)
        for _ in range(12):
            await attacker.http.post("/v1/auth/token", json={"email": email, "password": "nope"})
        blocked = await attacker.http.post(
            "/v1/auth/token", json={"email": email, "password": PASSWORD}
        )
        assert blocked.status_code == 429
        # Backoff, not a five-minute lock: the wait grows with the attempts past the limit.
        assert int(blocked.headers["retry-after"]) in range(1, 301)
        r = await owner.http.post("/v1/auth/token", json={"email": email, "password": PASSWORD})
        assert r.status_code == 200, r.text


async def test_first_backoff_is_short(api_app: AppFactory) -> None:
    async with api_app(login_attempts_per_5min=3) as app:
        client = Client(app, random_address())
        email = await _registered(client)
        for _ in range(3):
            await client.http.post("/v1/auth/token", json={"email": email, "password": "nope"})
        r = await client.http.post("/v1/auth/token", json={"email": email, "password": "nope"})
        assert r.status_code == 429 and int(r.headers["retry-after"]) <= 2


async def test_per_address_sign_in_limit_spans_emails(api_app: AppFactory) -> None:
    async with api_app(login_attempts_per_address_per_5min=10) as app:
        client = Client(app, random_address())
        answers = [
            await client.http.post(
                "/v1/auth/token",
                json={"email": f"x{i}@security.test", "password": "wrong-password"},
            )
            for i in range(12)
        ]
        assert [r.status_code for r in answers][-2:] == [429, 429]


async def test_registration_is_limited_per_address_except_loopback_in_development(
    api_app: AppFactory,
) -> None:
    async def register(client: Client) -> int:
        email = f"r-{os.urandom(6).hex()}@security.test"
        r = await client.http.post(
            "/v1/auth/register", json={"email": email, "password": PASSWORD, "role": "master"}
        )
        return r.status_code

    async with api_app(registrations_per_address_per_hour=3) as app:
        remote = Client(app, random_address())
        statuses = [await register(remote) for _ in range(5)]
        assert statuses == [201, 201, 201, 429, 429]
        loopback = Client(app, "127.0.0.1")
        assert [await register(loopback) for _ in range(5)] == [201] * 5
    async with api_app(environment="production", registrations_per_address_per_hour=2) as app:
        loopback = Client(app, "127.0.0.1")
        assert [await register(loopback) for _ in range(3)] == [201, 201, 429]


def test_password_hashing_uses_owasp_scrypt_parameters() -> None:
    assert OWASP_SCRYPT_N >= 2**17
    stored = hash_password("a passphrase")  # the default cost: N = 2^17, 128 MiB
    assert stored.startswith(f"scrypt${OWASP_SCRYPT_N}$")
    assert verify_password("a passphrase", stored)
    assert not verify_password("another", stored)


async def test_a_weaker_stored_hash_is_replaced_at_sign_in(
    api_app: AppFactory, engine: AsyncEngine
) -> None:
    email = f"legacy-{os.urandom(6).hex()}@security.test"
    async with engine.begin() as conn:
        await create_user(conn, str(uuid.uuid4()), email, hash_password(PASSWORD, 1024), "master")
    async with api_app(password_hash_n=2048) as app:
        r = await Client(app, random_address()).http.post(
            "/v1/auth/token", json={"email": email, "password": PASSWORD}
        )
        assert r.status_code == 200
    async with engine.connect() as conn:
        login = await get_user_by_email(conn, email)
    assert login is not None and login.password_hash.startswith("scrypt$2048$")
    assert verify_password(PASSWORD, login.password_hash)
