"""A master's own settings: GET/PATCH /v1/masters/me (issue 18 adds `copy_on`; the other
master settings of the v1 additions — copy_access, display_name — join the same body)."""

from __future__ import annotations

from fastapi import APIRouter

from schemas.api import MasterSettings, MasterSettingsOut
from services.api.deps import Deps, MasterAuth
from services.api.errors import MasterNotFound
from services.infra.db.repositories.users import get_copy_on, set_copy_on

router = APIRouter()


@router.get("/v1/masters/me", response_model=MasterSettingsOut)
async def my_settings(user: MasterAuth, c: Deps) -> MasterSettingsOut:
    async with c.engine.connect() as conn:
        copy_on = await get_copy_on(conn, user.user_id)
    if copy_on is None:
        raise MasterNotFound()
    return MasterSettingsOut(master_id=user.user_id, copy_on=copy_on)


@router.patch("/v1/masters/me", response_model=MasterSettingsOut)
async def change_settings(body: MasterSettings, user: MasterAuth, c: Deps) -> MasterSettingsOut:
    """`copy_on: submitted` copies alongside the master's own order (lowest latency);
    `accepted` waits until the master's broker accepted it (README: the policy)."""
    async with c.engine.begin() as conn:
        copy_on = (
            await set_copy_on(conn, user.user_id, body.copy_on)
            if body.copy_on is not None
            else await get_copy_on(conn, user.user_id)
        )
    if copy_on is None:
        raise MasterNotFound()
    return MasterSettingsOut(master_id=user.user_id, copy_on=copy_on)
