"""Brokerage accounts: POST/GET /v1/accounts, POST /v1/accounts/{id}/halt and /resume.

Linking verifies the credentials at the broker (one read-only call: the account) first."""

from __future__ import annotations

import uuid
from uuid import UUID

from fastapi import APIRouter

from schemas.api import AccountCreate, AccountOut, HaltRequest
from schemas.webhooks import WebhookEventType
from services.api.deps import Auth, Container, Deps
from services.api.errors import AccountDeleting, AccountNotFound
from services.api.views import account_out
from services.app.notifications import notify
from services.infra.auth import Principal
from services.infra.brokerage import validate_credentials
from services.infra.db.repositories.accounts import (
    accounts_of_user,
    get_account,
    insert_account,
    set_account_halted,
)
from services.infra.db.repositories.flattens import request_flatten

router = APIRouter()


@router.post(
    "/v1/accounts",
    status_code=201,
    response_model=AccountOut,
    response_model_exclude={"halted", "created_at", "deleting"},
)
async def create_account(body: AccountCreate, user: Auth, c: Deps) -> AccountOut:
    validate_credentials(body.broker.value, body.credentials)  # CredentialsRejected → 422
    # One read-only call at the broker before anything is stored: refused keys → 422
    # invalid_credentials, a broker that does not answer → 503 unavailable (BrokerUnreachable).
    await c.factory.verify(body.broker.value, body.credentials)
    account_id = str(uuid.uuid4())
    sealed = c.cipher.encrypt(account_id, body.credentials)
    async with c.engine.begin() as conn:
        await insert_account(conn, account_id, user.user_id, body.broker.value, body.label, sealed)
    # No row is read back: the answer echoes what was stored (halted, created_at excluded).
    return AccountOut(account_id=account_id, broker=body.broker.value, label=body.label)


@router.get("/v1/accounts", response_model=list[AccountOut])
async def list_accounts(user: Auth, c: Deps) -> list[AccountOut]:
    async with c.engine.connect() as conn:
        return [account_out(row) for row in await accounts_of_user(conn, user.user_id)]


async def _set_halted(
    account_id: UUID, user: Principal, c: Container, halted: bool, flatten: bool = False
) -> AccountOut:
    async with c.engine.begin() as conn:
        row = await set_account_halted(conn, str(account_id), user.user_id, halted)
        if row is None:
            if await get_account(conn, str(account_id), user.user_id) is not None:
                raise AccountDeleting()  # stays halted until it is gone
            raise AccountNotFound()
        if flatten:
            await request_flatten(conn, f"account:{account_id}", user.user_id)
    return account_out(row)


@router.post("/v1/accounts/{account_id}/halt", response_model=AccountOut)
async def halt(
    account_id: UUID, user: Auth, c: Deps, body: HaltRequest | None = None
) -> AccountOut:
    flatten = body is not None and body.flatten
    row = await _set_halted(account_id, user, c, True, flatten)
    data = {"account_id": str(account_id), "flatten": flatten}
    await notify(c.js, user.user_id, WebhookEventType.ACCOUNT_HALTED, data)
    return row


@router.post("/v1/accounts/{account_id}/resume", response_model=AccountOut)
async def resume(account_id: UUID, user: Auth, c: Deps) -> AccountOut:
    return await _set_halted(account_id, user, c, False)
