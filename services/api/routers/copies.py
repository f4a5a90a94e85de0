"""A follower's copies (legs): POST /v1/copies/{leg_id}/retry (GET /v1/copies: routers/history)."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter

from schemas.api import CopyOut
from schemas.messages import SWEEP_NOW_SUBJECT
from services.api.deps import Auth, Container, Deps
from services.api.errors import CopyNotFound, NotRetryable
from services.api.views import copy_out
from services.infra.db.repositories.legs import list_copies
from services.infra.db.repositories.recovery import leg_for, retry_failed_leg
from services.infra.metrics import LEGS_RETRIED

router = APIRouter()


async def recent_copies(
    c: Container, follower_id: str, order_id: str | None, limit: int
) -> list[CopyOut]:
    """The follower's legs, newest first."""
    async with c.engine.connect() as conn:
        rows = await list_copies(conn, follower_id, order_id, limit)
    return [copy_out(row) for row in rows]


# GET /v1/copies (pages, since/until, CSV) is served by services/api/routers/history.py.


@router.post("/v1/copies/{leg_id}/retry", status_code=202, response_model=CopyOut)
async def retry_copy(leg_id: UUID, user: Auth, c: Deps) -> CopyOut:
    """Retry a failed copy, exactly once: it goes back in doubt, and the sweeper looks it up at
    its broker by client order id before it resends (only if the broker never got it). The
    owner follower or an admin; anyone else is told there is no such copy."""
    owner = None if user.role == "admin" else user.user_id
    async with c.engine.begin() as conn:
        retried = await retry_failed_leg(conn, str(leg_id), owner)
        row = await leg_for(conn, str(leg_id), owner)
    if row is None:
        raise CopyNotFound()
    if retried is None:
        raise NotRetryable(details={"status": row.status})
    LEGS_RETRIED.inc()
    await c.nc.publish(SWEEP_NOW_SUBJECT, str(row.order_id).encode())
    return copy_out(row)
