"""A follower's copies (legs): GET /v1/copies."""

from __future__ import annotations

from fastapi import APIRouter

from schemas.api import CopyOut
from services.api.deps import Container
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


# GET /v1/copies (pages, since/until, CSV) is served by services/api/routers/history.py.
