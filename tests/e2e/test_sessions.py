"""Sessions on the running stack (the API under granian, its own PostgreSQL): the Python client
signs in, refreshes, is caught replaying a spent token, races itself, and logs out."""

from __future__ import annotations

import asyncio
import os

import httpx

from clients.copytrade_client import CopytradeClient, CopytradeError
from tests.helpers import Stack


async def test_refresh_rotation_reuse_race_and_logout(stack: Stack) -> None:
    email, password = f"e2e-session-{os.urandom(5).hex()}@example.com", "e2e session password"
    async with CopytradeClient(stack.api_url) as ct:
        await ct.register(email, password, "follower")
        await ct.sign_in(email, password)
        first = ct.refresh_token
        assert first
        await ct.refresh()
        assert ct.refresh_token != first and await ct.accounts() == []
        # A replayed (spent) token: reuse, and the session it belonged to ends.
        async with httpx.AsyncClient(base_url=stack.api_url) as raw:
            r = await raw.post("/v1/auth/refresh", json={"refresh_token": first})
            assert r.status_code == 401 and r.json()["error"]["code"] == "refresh_token_reused"
        try:
            await ct.refresh()
            raise AssertionError("the family should be revoked")
        except CopytradeError as refused:
            assert refused.code == "invalid_refresh_token"

        # Two simultaneous refreshes with one token on a fresh sign-in: exactly one wins.
        await ct.sign_in(email, password)
        body = {"refresh_token": ct.refresh_token}
        async with (
            httpx.AsyncClient(base_url=stack.api_url) as a,
            httpx.AsyncClient(base_url=stack.api_url) as b,
        ):
            answers = await asyncio.gather(
                a.post("/v1/auth/refresh", json=body), b.post("/v1/auth/refresh", json=body)
            )
        assert sorted(r.status_code for r in answers) == [200, 401]

        # Logout with the access token of a new sign-in: 204, and the refresh token is dead.
        await ct.sign_in(email, password)
        spent = ct.refresh_token
        await ct.logout()
        async with httpx.AsyncClient(base_url=stack.api_url) as raw:
            r = await raw.post("/v1/auth/refresh", json={"refresh_token": spent})
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_refresh_token"
