"""What an admin has to act on: GET /v1/admin/legs?kind=failed|in_doubt (failed copies are
retried with POST /v1/copies/{leg_id}/retry) and GET /v1/admin/orders/dead-lettered."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from schemas.admin import AdminLegOut, DeadLetterOut, StuckKind
from services.api.deps import AdminAuth, Deps
from services.api.views import copy_out, order_out
from services.infra.db.repositories.orders import orders_progress
from services.infra.db.repositories.recovery import IN_DOUBT, dead_lettered_orders, stuck_legs

router = APIRouter()

Limit = Annotated[int, Query(ge=1, le=500)]
# The statuses a retry takes (replication.state.RETRIES), and those the sweeper still resolves.
STATUSES = {StuckKind.FAILED: ["failed", "expired"], StuckKind.IN_DOUBT: list(IN_DOUBT)}


@router.get("/v1/admin/legs", response_model=list[AdminLegOut])
async def admin_legs(
    user: AdminAuth, c: Deps, kind: StuckKind = StuckKind.FAILED, limit: Limit = 100
) -> list[AdminLegOut]:
    """Follower copies that failed (retryable) or are in doubt, most recently changed first."""
    async with c.engine.connect() as conn:
        rows = await stuck_legs(conn, STATUSES[kind], limit)
    return [
        AdminLegOut(
            **copy_out(row).model_dump(),
            follower_id=str(row.follower_id) if row.follower_id else None,
        )
        for row in rows
    ]


@router.get("/v1/admin/orders/dead-lettered", response_model=list[DeadLetterOut])
async def admin_dead_letters(user: AdminAuth, c: Deps, limit: Limit = 100) -> list[DeadLetterOut]:
    """Master orders whose message ran out of delivery attempts (the sweeper revives them once
    their dependencies are back), newest first."""
    async with c.engine.connect() as conn:
        parked = await dead_lettered_orders(conn, limit)
        progress = await orders_progress(conn, [str(row.id) for row, _ in parked])
    return [
        DeadLetterOut(**order_out(row, progress[str(row.id)]).model_dump(), dead_letter_reason=why)
        for row, why in parked
    ]
