"""A follower's copies (legs): GET /v1/copies."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query

from schemas.api import CopyOut
from services.api.deps import Container, Deps, FollowerAuth
from services.api.views import copy_out
from services.infra.db.repositories.legs import list_copies

router = APIRouter()


async def recent_copies(
    c: Container, follower_id: str, order_id: str | None, limit: int
) -> list[CopyOut]:
    """The follower's legs, newest first."""
    async with c.engine.connect() as conn:
        rows = await list_copies(conn, follower_id, order_id, limit)
    return [copy_out(row) for row in rows]


@router.get("/v1/copies", response_model=list[CopyOut])
async def copies(
    user: FollowerAuth,
    c: Deps,
    order_id: UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[CopyOut]:
    return await recent_copies(c, user.user_id, str(order_id) if order_id else None, limit)
