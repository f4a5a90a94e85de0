"""Refresh-token families and their tokens (migration 0062). Tokens are stored as SHA-256
digests only: a copy of the table cannot be replayed."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import text

from services.infra.db.repositories.base import Connection, fetch_one_as


@dataclass(frozen=True, slots=True)
class Spent:
    """A token just spent by a refresh: the family goes on, for this user and role."""

    family_id: UUID
    user_id: UUID
    role: str


@dataclass(frozen=True, slots=True)
class Presented:
    """What a token that could not be spent was: its family, and whether it was spent before."""

    family_id: UUID
    spent: bool


async def open_family(conn: Connection, family_id: str, user_id: str) -> None:
    await conn.execute(
        text("INSERT INTO refresh_families (id, user_id) VALUES (:id, :user_id)"),
        {"id": family_id, "user_id": user_id},
    )


async def add_token(conn: Connection, digest: bytes, family_id: str, ttl_s: int) -> None:
    await conn.execute(
        text(
            "INSERT INTO refresh_tokens (token_hash, family_id, expires_at) "
            "VALUES (:digest, :family_id, now() + make_interval(secs => :ttl))"
        ),
        {"digest": digest, "family_id": family_id, "ttl": ttl_s},
    )


async def spend_token(conn: Connection, digest: bytes) -> Spent | None:
    """Mark a live token spent, atomically: of two concurrent spends of one token the second
    waits for the first's row lock, sees `used_at` set and updates nothing."""
    return fetch_one_as(
        await conn.execute(
            text(
                "UPDATE refresh_tokens t SET used_at = now() "
                "FROM refresh_families f JOIN users u ON u.id = f.user_id "
                "WHERE t.token_hash = :digest AND f.id = t.family_id AND t.used_at IS NULL "
                "AND t.expires_at > now() AND f.revoked_at IS NULL "
                "RETURNING t.family_id, f.user_id, u.role"
            ),
            {"digest": digest},
        ),
        Spent,
    )


async def presented(conn: Connection, digest: bytes) -> Presented | None:
    return fetch_one_as(
        await conn.execute(
            text(
                "SELECT family_id, used_at IS NOT NULL FROM refresh_tokens "
                "WHERE token_hash = :digest"
            ),
            {"digest": digest},
        ),
        Presented,
    )


async def revoke_family(conn: Connection, family_id: UUID | str, reason: str) -> None:
    await conn.execute(
        text(
            "UPDATE refresh_families SET revoked_at = now(), revoked_reason = :reason "
            "WHERE id = :id AND revoked_at IS NULL"
        ),
        {"id": family_id, "reason": reason},
    )


async def purge_expired(conn: Connection, grace_s: int, limit: int = 5000) -> int:
    """Delete tokens expired more than `grace_s` ago, then families left without tokens; the
    number of tokens deleted (at most `limit` per call)."""
    result = await conn.execute(
        text(
            "DELETE FROM refresh_tokens WHERE token_hash IN (SELECT token_hash FROM "
            "refresh_tokens WHERE expires_at < now() - make_interval(secs => :grace) "
            "LIMIT :limit)"
        ),
        {"grace": grace_s, "limit": limit},
    )
    await conn.execute(
        text(
            "DELETE FROM refresh_families f WHERE f.created_at < now() - make_interval("
            "secs => :grace) AND NOT EXISTS (SELECT 1 FROM refresh_tokens t "
            "WHERE t.family_id = f.id)"
        ),
        {"grace": grace_s},
    )
    return int(result.rowcount or 0)
