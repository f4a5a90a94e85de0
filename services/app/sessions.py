"""Sessions: rotating, revocable refresh tokens beside short-lived JWT access tokens.

A sign-in opens a family and hands out its first refresh token: 256 random bits, opaque, stored
as a SHA-256 digest only. `rotate` spends the presented token and issues the next one of the
same family, atomically (of two concurrent refreshes with one token exactly one wins). A token
spent before and presented again means two parties hold the family (a stolen token, or a client
that replayed one): the whole family is revoked and `RefreshReused` raised. `revoke` (logout)
ends a family. Access tokens are not tracked: they keep working until their own expiry.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from services.infra.db.repositories.sessions import (
    add_token,
    open_family,
    presented,
    revoke_family,
    spend_token,
)

TOKEN_BYTES = 32
MAX_TOKEN_LENGTH = 256


class RefreshRejected(Exception):
    """A refresh token that opens nothing; `code` says why (the API answers 401)."""

    code = "invalid_refresh_token"


class RefreshReused(RefreshRejected):
    code = "refresh_token_reused"


@dataclass(frozen=True)
class Rotated:
    user_id: str
    role: str
    refresh_token: str


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


async def open_session(engine: AsyncEngine, user_id: str, ttl_s: int) -> str:
    """A new family for a signed-in user; its first refresh token."""
    token, family_id = _new_token(), str(uuid.uuid4())
    async with engine.begin() as conn:
        await open_family(conn, family_id, user_id)
        await add_token(conn, digest(token), family_id, ttl_s)
    return token


async def rotate(engine: AsyncEngine, token: str, ttl_s: int) -> Rotated:
    """Spend `token` and issue the next of its family; RefreshReused / RefreshRejected."""
    if not 0 < len(token) <= MAX_TOKEN_LENGTH:
        raise RefreshRejected("invalid refresh token")
    hashed = digest(token)
    async with engine.begin() as conn:
        spent = await spend_token(conn, hashed)
        if spent is not None:
            following = _new_token()
            await add_token(conn, digest(following), str(spent.family_id), ttl_s)
            return Rotated(str(spent.user_id), spent.role, following)
        known = await presented(conn, hashed)
        if known is not None and known.spent:
            await revoke_family(conn, known.family_id, "reused")
    if known is not None and known.spent:
        raise RefreshReused("refresh token already used; every session of this sign-in ended")
    raise RefreshRejected("invalid or expired refresh token")


async def revoke(engine: AsyncEngine, token: str) -> None:
    """Logout: end the family of `token` (nothing happens for a token that is not ours)."""
    if not 0 < len(token) <= MAX_TOKEN_LENGTH:
        return
    async with engine.begin() as conn:
        known = await presented(conn, digest(token))
        if known is not None:
            await revoke_family(conn, known.family_id, "logout")
