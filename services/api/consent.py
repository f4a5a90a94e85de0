"""Whether a master consents to a new follower: its copy access and invite codes (API.md)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.errors import InviteRequired, MasterClosed, MasterNotFound
from services.infra.db.repositories.masters import get_profile, use_invite


async def admit_follower(conn: AsyncConnection, master_id: str, invite_code: str | None) -> None:
    """Refuse a new subscription the master has not consented to (403), spending one use of
    the invite code when one is needed; MasterNotFound when the id is not a master's."""
    profile = await get_profile(conn, master_id)
    if profile is None:
        raise MasterNotFound()
    if profile.copy_access == "closed":
        raise MasterClosed()
    if profile.copy_access == "invite" and not (
        invite_code and await use_invite(conn, master_id, invite_code)
    ):
        raise InviteRequired()
