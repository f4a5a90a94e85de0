"""Sign-up and sign-in: POST /v1/auth/register, POST /v1/auth/token."""

from __future__ import annotations

import asyncio
import hashlib
import uuid

from fastapi import APIRouter

from schemas.api import RegisterRequest, RegisterResponse, TokenRequest, TokenResponse
from services.api.deps import Deps
from services.api.errors import EmailTaken, TooManyAttempts, WrongPassword
from services.infra.auth import Principal, hash_password, verify_password
from services.infra.db.repositories.base import Conflict
from services.infra.db.repositories.users import create_user, get_user_by_email

router = APIRouter()

FAILED_LOGIN_WINDOW_S = 300


@router.post("/v1/auth/register", status_code=201, response_model=RegisterResponse)
async def register(body: RegisterRequest, c: Deps) -> RegisterResponse:
    user_id = str(uuid.uuid4())
    password_hash = await asyncio.to_thread(
        hash_password, body.password, c.settings.password_hash_n
    )
    async with c.engine.begin() as conn:
        try:
            await create_user(conn, user_id, body.email, password_hash, body.role)
        except Conflict as exc:
            raise EmailTaken() from exc
    return RegisterResponse(user_id=user_id)


@router.post("/v1/auth/token", response_model=TokenResponse)
async def token(body: TokenRequest, c: Deps) -> TokenResponse:
    email = body.email.strip().lower()
    throttle_key = "login:fail:" + hashlib.sha256(email.encode()).hexdigest()
    failures = await c.redis.get(throttle_key)
    if failures is not None and int(failures) >= c.settings.login_attempts_per_5min:
        raise TooManyAttempts(headers={"Retry-After": str(FAILED_LOGIN_WINDOW_S)})
    async with c.engine.connect() as conn:
        user = await get_user_by_email(conn, email)
    stored = user.password_hash if user else c.dummy_hash  # same work for unknown emails
    ok = await asyncio.to_thread(verify_password, body.password, stored)
    if user is None or not ok:
        pipe = c.redis.pipeline()
        pipe.incr(throttle_key)
        pipe.expire(throttle_key, FAILED_LOGIN_WINDOW_S)
        await pipe.execute()
        raise WrongPassword()
    ttl = c.settings.access_token_ttl_s
    issued = c.issuer.issue(Principal(str(user.id), user.role), ttl)
    return TokenResponse(access_token=issued, expires_in=ttl)
