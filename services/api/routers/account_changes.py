"""Changing and removing a linked account: PATCH /v1/accounts/{id}, DELETE /v1/accounts/{id}.

New credentials pass the broker's typed model, then one read-only call at the broker (the
account) before they are sealed and stored; the next copy builds a fresh adapter from them.
A delete is refused (409 account_in_use) while copies into or from the account are open.
"""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Response

from schemas.api import AccountOut, AccountPatch
from services.api.deps import Auth, Deps
from services.api.errors import AccountInUse, AccountNotFound, Unprocessable
from services.api.views import account_out
from services.infra.brokerage import validate_credentials
from services.infra.db.repositories.accounts import (
    account_in_use,
    delete_account,
    get_account,
    update_account,
)

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


@router.delete("/v1/accounts/{account_id}", status_code=204)
async def remove_account(account_id: UUID, user: Auth, c: Deps) -> Response:
    async with c.engine.begin() as conn:
        if await get_account(conn, str(account_id), user.user_id) is None:
            raise AccountNotFound()
        if await account_in_use(conn, str(account_id)):
            raise AccountInUse()
        tombstone = c.cipher.encrypt(str(account_id), {})
        await delete_account(conn, str(account_id), user.user_id, tombstone)
    return Response(status_code=204)
