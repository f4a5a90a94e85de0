"""Kill switches for admins: global and per-master halt/resume, and the list of halts."""

from __future__ import annotations

import logging
from uuid import UUID

from fastapi import APIRouter

from schemas.api import HaltRequest, HaltState
from services.api.deps import AdminAuth, Container, Deps, require
from services.api.errors import MasterNotFound
from services.infra.auth import Principal
from services.infra.db.repositories.flattens import request_flatten
from services.infra.db.repositories.halts import (
    GLOBAL_HALT_SCOPE,
    halt_scopes,
    master_halt_scope,
    set_halt,
)
from services.infra.db.repositories.users import get_user

log = logging.getLogger("copytrade.api")

router = APIRouter()


async def _halt(
    user: Principal, c: Container, scope: str, halted: bool, flatten: bool = False
) -> HaltState:
    require(user, "admin")
    request_id = None
    async with c.engine.begin() as conn:
        await set_halt(conn, scope, user.user_id, halted)
        if flatten:
            request_id = await request_flatten(conn, scope, user.user_id)
    log.warning(
        "admin %s %s %s%s",
        user.user_id,
        "halted" if halted else "resumed",
        scope,
        " and asked to flatten" if flatten else "",
    )
    return HaltState(scope=scope, halted=halted, flatten_request_id=request_id)


async def _master_scope(master_id: UUID, c: Container) -> str:
    async with c.engine.connect() as conn:
        master = await get_user(conn, str(master_id))
    if master is None or master.role != "master":
        raise MasterNotFound()
    return master_halt_scope(str(master_id))


@router.post("/v1/admin/halt", response_model=HaltState, response_model_exclude_none=True)
async def global_halt(user: AdminAuth, c: Deps, body: HaltRequest | None = None) -> HaltState:
    return await _halt(user, c, GLOBAL_HALT_SCOPE, True, body is not None and body.flatten)


@router.post("/v1/admin/resume", response_model=HaltState, response_model_exclude_none=True)
async def global_resume(user: AdminAuth, c: Deps) -> HaltState:
    return await _halt(user, c, GLOBAL_HALT_SCOPE, False)


@router.post(
    "/v1/admin/masters/{master_id}/halt", response_model=HaltState, response_model_exclude_none=True
)
async def master_halt(
    master_id: UUID, user: AdminAuth, c: Deps, body: HaltRequest | None = None
) -> HaltState:
    require(user, "admin")  # before the lookup: a non-admin learns nothing about masters
    flatten = body is not None and body.flatten
    return await _halt(user, c, await _master_scope(master_id, c), True, flatten)


@router.post(
    "/v1/admin/masters/{master_id}/resume",
    response_model=HaltState,
    response_model_exclude_none=True,
)
async def master_resume(master_id: UUID, user: AdminAuth, c: Deps) -> HaltState:
    require(user, "admin")
    return await _halt(user, c, await _master_scope(master_id, c), False)


@router.get("/v1/admin/halts", response_model=list[HaltState], response_model_exclude_none=True)
async def halts(user: AdminAuth, c: Deps) -> list[HaltState]:
    require(user, "admin")
    async with c.engine.connect() as conn:
        scopes = await halt_scopes(conn)
    return [HaltState(scope=scope, halted=True) for scope in sorted(scopes)]
