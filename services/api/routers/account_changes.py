"""Changing and removing a linked account: PATCH /v1/accounts/{id}, DELETE /v1/accounts/{id}.

New credentials pass the broker's typed model, then one read-only call at the broker (the
account) before they are sealed and stored; the next copy builds a fresh adapter from them.
A delete is refused (409 account_in_use) while copies into or from the account are open,
unless `?positions=close`: then the account is halted, its subscriptions end and a flatten of
the account is requested (resting copies canceled, copied positions closed, by the sweeper);
the answer is 202 with `deleting: true`, and the sweeper retires the account (tombstone
credentials, gone from every list) once the flatten is done and no leg on it is open.
"""

from __future__ import annotations

import contextlib
from uuid import UUID

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from schemas.api import AccountOut, AccountPatch, AccountPositions
from schemas.messages import SWEEP_NOW_SUBJECT
from services.api.deps import Auth, Deps
from services.api.errors import AccountDeleting, AccountInUse, AccountNotFound, Unprocessable
from services.api.views import account_out
from services.infra.brokerage import validate_credentials
from services.infra.db.repositories.accounts import (
    account_in_use,
    begin_deletion,
    delete_account,
    get_account,
    update_account,
)
from services.infra.db.repositories.flattens import request_flatten

router = APIRouter()


@router.patch("/v1/accounts/{account_id}", response_model=AccountOut)
async def patch_account(account_id: UUID, body: AccountPatch, user: Auth, c: Deps) -> AccountOut:
    changes = body.model_dump(exclude_unset=True)
    if any(value is None for value in changes.values()):
        raise Unprocessable("fields may be changed but not set to null")
    async with c.engine.connect() as conn:
        current = await get_account(conn, str(account_id), user.user_id)
    if current is None:
        raise AccountNotFound()
    sealed: bytes | None = None
    if body.credentials is not None:
        validate_credentials(current.broker, body.credentials)  # CredentialsRejected → 422
        await c.factory.verify(current.broker, body.credentials)
        sealed = c.cipher.encrypt(str(account_id), body.credentials)
    async with c.engine.begin() as conn:
        row = await update_account(conn, str(account_id), user.user_id, body.label, sealed)
    if row is None:
        raise AccountNotFound()
    return account_out(row)


@router.delete(
    "/v1/accounts/{account_id}",
    status_code=204,
    responses={202: {"model": AccountOut, "description": "deleting once its copies are closed"}},
)
async def remove_account(
    account_id: UUID, user: Auth, c: Deps, positions: AccountPositions | None = None
) -> Response:
    aid = str(account_id)
    async with c.engine.begin() as conn:
        account = await get_account(conn, aid, user.user_id)
        if account is None:
            raise AccountNotFound()
        if account.deleting_at is None and not await account_in_use(conn, aid):
            await delete_account(conn, aid, user.user_id, c.cipher.encrypt(aid, {}))
            return Response(status_code=204)
        if positions is None:
            raise AccountInUse() if account.deleting_at is None else AccountDeleting()
        began = await begin_deletion(conn, aid, user.user_id)
        if began is not None:  # a repeated DELETE answers the same; one flatten only
            account = began
            await request_flatten(conn, f"account:{aid}", user.user_id)
    with contextlib.suppress(Exception):  # only a wake-up: the sweeper also looks on its own
        await c.nc.publish(SWEEP_NOW_SUBJECT, b"flatten")
    return JSONResponse(account_out(account).model_dump(mode="json"), status_code=202)
