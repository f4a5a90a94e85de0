"""A master's consent to be copied: PATCH /v1/masters/me, POST /v1/masters/me/invites,
GET /v1/masters/me/followers and DELETE /v1/masters/me/followers/{subscription_id}.

A master sees its followers' subscriptions only (ids, states): never who they are, which
account copies or how it is sized."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from uuid import UUID

from fastapi import APIRouter, Response

from schemas.masters import FollowerOut, InviteCreate, InviteOut, MasterOut, MasterPatch
from services.api.deps import Auth, Deps, MasterAuth, require
from services.api.errors import MasterNotFound, SubscriptionNotFound, Unprocessable
from services.infra.db.repositories.masters import (
    MasterProfile,
    end_follower,
    followers_of_master,
    get_profile,
    insert_invite,
    update_profile,
)

router = APIRouter()


def _out(profile: MasterProfile) -> MasterOut:
    return MasterOut(
        master_id=str(profile.id),
        copy_access=profile.copy_access,
        display_name=profile.display_name,
        copy_on=profile.copy_on,
    )


@router.get("/v1/masters/me", response_model=MasterOut)
async def get_master(user: MasterAuth, c: Deps) -> MasterOut:
    async with c.engine.connect() as conn:
        profile = await get_profile(conn, user.user_id)
    if profile is None:
        raise MasterNotFound()
    return _out(profile)


@router.patch("/v1/masters/me", response_model=MasterOut)
async def patch_master(body: MasterPatch, user: MasterAuth, c: Deps) -> MasterOut:
    """Who may copy (`copy_access`), the public name, and when copies go out (`copy_on`:
    `submitted` alongside the master's own order, `accepted` once its broker accepted it)."""
    changes = body.model_dump(exclude_unset=True)
    if any(value is None for name, value in changes.items() if name != "display_name"):
        raise Unprocessable("copy_access and copy_on may be changed but not set to null")
    async with c.engine.begin() as conn:
        profile = await update_profile(conn, user.user_id, changes)
    if profile is None:
        raise MasterNotFound()
    return _out(profile)


@router.post("/v1/masters/me/invites", status_code=201, response_model=InviteOut)
async def create_invite(body: InviteCreate, user: Auth, c: Deps) -> InviteOut:
    require(user, "master")
    code = secrets.token_urlsafe(24)
    expires_at = datetime.now(UTC) + timedelta(seconds=body.expires_in_s)
    async with c.engine.begin() as conn:
        await insert_invite(conn, user.user_id, code, body.max_uses, expires_at)
    return InviteOut(invite_code=code, expires_at=expires_at)


@router.get("/v1/masters/me/followers", response_model=list[FollowerOut])
async def list_followers(user: Auth, c: Deps) -> list[FollowerOut]:
    require(user, "master")
    async with c.engine.connect() as conn:
        rows = await followers_of_master(conn, user.user_id)
    return [
        FollowerOut(
            subscription_id=str(row.id),
            paused=row.paused,
            created_at=row.created_at,
            ending_at=row.ending_at,
        )
        for row in rows
    ]


@router.delete("/v1/masters/me/followers/{subscription_id}", status_code=204)
async def remove_follower(subscription_id: UUID, user: Auth, c: Deps) -> Response:
    require(user, "master")
    async with c.engine.begin() as conn:
        ended = await end_follower(conn, user.user_id, str(subscription_id))
    if not ended:
        raise SubscriptionNotFound()
    return Response(status_code=204)
