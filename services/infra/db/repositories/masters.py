"""Masters' consent to be copied: copy access, invite codes, and the followers a master sees
(subscription ids and states only: never the follower's identity, account or settings)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from services.infra.db.repositories.base import (
    Connection,
    columns,
    fetch_all_as,
    fetch_one_as,
    text,
)


@dataclass(frozen=True, slots=True)
class MasterProfile:
    id: UUID
    copy_access: str
    display_name: str | None
    copy_on: str  # "submitted" or "accepted": when this master's copies go out


@dataclass(frozen=True, slots=True)
class FollowerView:
    """One subscription to a master, as the master may see it."""

    id: UUID
    paused: bool
    created_at: datetime
    ending_at: datetime | None


def invite_digest(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


async def get_profile(conn: Connection, master_id: str) -> MasterProfile | None:
    return fetch_one_as(
        await conn.execute(
            text(f"SELECT {columns(MasterProfile)} FROM users WHERE id = :id AND role = 'master'"),
            {"id": master_id},
        ),
        MasterProfile,
    )


async def update_profile(
    conn: Connection, master_id: str, changes: dict[str, str | None]
) -> MasterProfile | None:
    """Set copy_access, display_name and/or copy_on (only those columns can be named here)."""
    allowed = [name for name in ("copy_access", "display_name", "copy_on") if name in changes]
    values: dict[str, str | None] = {"id": master_id}
    values.update({name: changes[name] for name in allowed})
    assignments = ", ".join(f"{name} = :{name}" for name in allowed) or "copy_access = copy_access"
    return fetch_one_as(
        await conn.execute(
            text(
                f"UPDATE users SET {assignments} WHERE id = :id AND role = 'master' "
                f"RETURNING {columns(MasterProfile)}"
            ),
            values,
        ),
        MasterProfile,
    )


async def insert_invite(
    conn: Connection, master_id: str, code: str, max_uses: int | None, expires_at: datetime
) -> None:
    await conn.execute(
        text(
            "INSERT INTO master_invites (code_digest, master_id, max_uses, expires_at) "
            "VALUES (:digest, :master_id, :max_uses, :expires_at)"
        ),
        {
            "digest": invite_digest(code),
            "master_id": master_id,
            "max_uses": max_uses,
            "expires_at": expires_at,
        },
    )


async def use_invite(conn: Connection, master_id: str, code: str) -> bool:
    """Spend one use of a valid code of this master (atomic: a row lock, one statement)."""
    result = await conn.execute(
        text(
            "UPDATE master_invites SET uses = uses + 1 "
            "WHERE code_digest = :digest AND master_id = :master_id AND expires_at > now() "
            "AND (max_uses IS NULL OR uses < max_uses) RETURNING uses"
        ),
        {"digest": invite_digest(code), "master_id": master_id},
    )
    return result.first() is not None


async def followers_of_master(conn: Connection, master_id: str) -> list[FollowerView]:
    return fetch_all_as(
        await conn.execute(
            text(
                f"SELECT {columns(FollowerView)} FROM subscriptions "
                "WHERE master_id = :master_id ORDER BY created_at DESC"
            ),
            {"master_id": master_id},
        ),
        FollowerView,
    )


async def end_follower(conn: Connection, master_id: str, subscription_id: str) -> bool:
    """The master's removal of a follower: the subscription ends (follow_exits semantics: the
    replicator copies no new entries, only exits, once `ending_at` is set)."""
    result = await conn.execute(
        text(
            "UPDATE subscriptions SET ending_at = now() "
            "WHERE id = :id AND master_id = :master_id AND ending_at IS NULL RETURNING id"
        ),
        {"id": subscription_id, "master_id": master_id},
    )
    return result.first() is not None
