"""Sessions: rotating refresh tokens, reuse detection, logout, the race, the throttle, and the
Python client's silent refresh (the API in-process over real PostgreSQL, Redis and NATS)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from clients.copytrade_client import CopytradeClient, CopytradeError
from services.infra.auth import Principal
from services.infra.db.repositories.sessions import purge_expired
from tests.security.conftest import PASSWORD, AppFactory, Client, random_address


async def _sign_in(client: Client) -> tuple[str, dict[str, Any]]:
    email = f"session-{os.urandom(6).hex()}@security.test"
    r = await client.http.post(
        "/v1/auth/register", json={"email": email, "password": PASSWORD, "role": "follower"}
    )
    assert r.status_code == 201, r.text
    r = await client.http.post("/v1/auth/token", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return email, r.json()


async def _refresh(client: Client, token: str) -> httpx.Response:
    return await client.http.post("/v1/auth/refresh", json={"refresh_token": token})


def _code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


async def test_sign_in_hands_out_a_refresh_token_stored_only_as_a_digest(
    api_app: AppFactory, engine: AsyncEngine
) -> None:
    async with api_app(refresh_token_ttl_s=7200) as app:
        _, tokens = await _sign_in(Client(app, random_address()))
    assert tokens["token_type"] == "bearer"
    assert tokens["refresh_expires_in"] == 7200
    refresh = tokens["refresh_token"]
    assert len(refresh) >= 43  # 256 random bits, base64url
    async with engine.connect() as conn:
        stored = (
            await conn.execute(
                text(
                    "SELECT token_hash, expires_at - issued_at FROM refresh_tokens "
                    "WHERE token_hash = :h"
                ),
                {"h": hashlib.sha256(refresh.encode()).digest()},
            )
        ).one()
        raw = await conn.execute(
            text("SELECT count(*) FROM refresh_tokens WHERE token_hash = :raw"),
            {"raw": refresh.encode()},
        )
        assert raw.scalar() == 0
    assert stored[1].total_seconds() == pytest.approx(7200, abs=5)


async def test_refresh_rotates_and_a_spent_token_revokes_the_family(api_app: AppFactory) -> None:
    async with api_app() as app:
        client = Client(app, random_address())
        _, first = await _sign_in(client)
        r = await _refresh(client, first["refresh_token"])
        assert r.status_code == 200, r.text
        second = r.json()
        assert set(second) == {
            "access_token",
            "token_type",
            "expires_in",
            "refresh_token",
            "refresh_expires_in",
        }
        assert second["refresh_token"] != first["refresh_token"]
        r = await client.http.get("/v1/accounts", headers=client.auth(second["access_token"]))
        assert r.status_code == 200, r.text
        # The first token again: someone else holds this session. Everything of it ends.
        r = await _refresh(client, first["refresh_token"])
        assert (r.status_code, _code(r)) == (401, "refresh_token_reused")
        r = await _refresh(client, second["refresh_token"])
        assert (r.status_code, _code(r)) == (401, "invalid_refresh_token")
        # Access tokens are JWTs: they keep working until their expiry.
        r = await client.http.get("/v1/accounts", headers=client.auth(second["access_token"]))
        assert r.status_code == 200


async def test_a_family_outlives_many_rotations_and_other_sign_ins_are_untouched(
    api_app: AppFactory,
) -> None:
    async with api_app() as app:
        client = Client(app, random_address())
        email, tokens = await _sign_in(client)
        r = await client.http.post("/v1/auth/token", json={"email": email, "password": PASSWORD})
        other = r.json()["refresh_token"]
        current = tokens["refresh_token"]
        for _ in range(5):
            r = await _refresh(client, current)
            assert r.status_code == 200, r.text
            current = r.json()["refresh_token"]
        r = await _refresh(client, tokens["refresh_token"])  # the very first one: reused
        assert _code(r) == "refresh_token_reused"
        r = await _refresh(client, other)  # another sign-in (another device) goes on
        assert r.status_code == 200, r.text


async def test_two_simultaneous_refreshes_with_one_token_exactly_one_wins(
    api_app: AppFactory,
) -> None:
    async with api_app() as app:
        client = Client(app, random_address())
        for _ in range(3):
            _, tokens = await _sign_in(client)
            answers = await asyncio.gather(
                *(_refresh(client, tokens["refresh_token"]) for _ in range(8))
            )
            statuses = sorted(r.status_code for r in answers)
            assert statuses == [200] + [401] * 7, [r.text for r in answers]
            assert {_code(r) for r in answers if r.status_code == 401} == {"refresh_token_reused"}
            # The losers presented a spent token: the winner's family is revoked too.
            winner = next(r for r in answers if r.status_code == 200).json()
            r = await _refresh(client, winner["refresh_token"])
            assert _code(r) == "invalid_refresh_token"


async def test_unknown_and_expired_tokens_are_invalid(
    api_app: AppFactory, engine: AsyncEngine
) -> None:
    async with api_app() as app:
        client = Client(app, random_address())
        r = await _refresh(client, "not-a-token-we-ever-issued")
        assert (r.status_code, _code(r)) == (401, "invalid_refresh_token")
        r = await _refresh(client, "x" * 257)
        assert r.status_code == 422
        r = await client.http.post("/v1/auth/refresh", json={})
        assert r.status_code == 422
        _, tokens = await _sign_in(client)
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE refresh_tokens SET expires_at = now() - interval '1 second' "
                    "WHERE token_hash = :h"
                ),
                {"h": hashlib.sha256(tokens["refresh_token"].encode()).digest()},
            )
        r = await _refresh(client, tokens["refresh_token"])
        assert (r.status_code, _code(r)) == (401, "invalid_refresh_token")


async def test_logout_revokes_the_family_with_or_without_an_access_token(
    api_app: AppFactory,
) -> None:
    async with api_app() as app:
        client = Client(app, random_address())
        for bearer in (False, True):
            _, tokens = await _sign_in(client)
            r = await _refresh(client, tokens["refresh_token"])
            rotated = r.json()
            headers = client.auth(rotated["access_token"]) if bearer else {}
            body = {"refresh_token": rotated["refresh_token"]}
            r = await client.http.post("/v1/auth/logout", json=body, headers=headers)
            assert r.status_code == 204 and r.content == b""
            r = await _refresh(client, rotated["refresh_token"])
            assert (r.status_code, _code(r)) == (401, "invalid_refresh_token")
            # Logging out again, or with a token nobody issued, says nothing either way.
            r = await client.http.post("/v1/auth/logout", json=body)
            assert r.status_code == 204
        r = await client.http.post("/v1/auth/logout", json={"refresh_token": "unknown"})
        assert r.status_code == 204


async def test_refreshes_go_through_the_per_address_sign_in_throttle(
    api_app: AppFactory,
) -> None:
    async with api_app(login_attempts_per_address_per_5min=4) as app:
        client = Client(app, random_address())
        _, tokens = await _sign_in(client)  # one sign-in counted
        current = tokens["refresh_token"]
        for _ in range(3):
            r = await _refresh(client, current)
            assert r.status_code == 200, r.text
            current = r.json()["refresh_token"]
        r = await _refresh(client, current)
        assert (r.status_code, _code(r)) == (429, "too_many_attempts")
        assert int(r.headers["retry-after"]) >= 1
        # Refused before the token was looked at: it is still good from another address.
        r = await _refresh(Client(app, random_address()), current)
        assert r.status_code == 200, r.text


async def test_the_client_refreshes_silently_when_the_access_token_expired(
    api_app: AppFactory,
) -> None:
    async with api_app() as app:
        address = random_address()
        transport = httpx.ASGITransport(app=app, client=(address, 40000))
        email, _ = await _sign_in(Client(app, address))
        async with CopytradeClient("http://testserver", transport=transport) as ct:
            await ct.sign_in(email, PASSWORD)
            first_refresh = ct.refresh_token
            # An access token that expired a minute ago, as the API answers after 15 minutes.
            claims = app.state.container.issuer.verify(ct.token)
            ct.token = app.state.container.issuer.issue(Principal(claims.user_id, claims.role), -60)
            r = await ct.http.get("/v1/accounts", headers={"authorization": f"Bearer {ct.token}"})
            assert r.json()["error"]["code"] == "token_expired"
            accounts, _ = await asyncio.gather(ct.accounts(), ct.accounts())  # one refresh
            assert accounts == []
            assert ct.refresh_token != first_refresh
            await ct.logout()
            assert ct.token is None and ct.refresh_token is None
            with pytest.raises(CopytradeError) as refused:
                await ct.refresh()
            assert refused.value.code == "invalid_refresh_token"


async def test_the_sweeper_purges_long_expired_tokens_and_their_empty_families(
    api_app: AppFactory, engine: AsyncEngine
) -> None:
    async with api_app() as app:
        client = Client(app, random_address())
        _, old = await _sign_in(client)
        _, live = await _sign_in(client)
    digests = {
        name: hashlib.sha256(tokens["refresh_token"].encode()).digest()
        for name, tokens in (("old", old), ("live", live))
    }
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE refresh_families SET created_at = now() - interval '40 days' "
                "WHERE id = (SELECT family_id FROM refresh_tokens WHERE token_hash = :h)"
            ),
            {"h": digests["old"]},
        )
        await conn.execute(
            text(
                "UPDATE refresh_tokens SET expires_at = now() - interval '2 days' "
                "WHERE token_hash = :h"
            ),
            {"h": digests["old"]},
        )
        assert await purge_expired(conn, grace_s=86_400) >= 1
        left = await conn.execute(
            text("SELECT token_hash FROM refresh_tokens WHERE token_hash = ANY(:hs)"),
            {"hs": list(digests.values())},
        )
        assert [row[0] for row in left] == [digests["live"]]
        families = await conn.execute(
            text(
                "SELECT count(*) FROM refresh_families f WHERE f.created_at < "
                "now() - interval '39 days' AND NOT EXISTS (SELECT 1 FROM refresh_tokens t "
                "WHERE t.family_id = f.id)"
            )
        )
        assert families.scalar() == 0
