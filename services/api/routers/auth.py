"""Sign-up and sign-in: POST /v1/auth/register, POST /v1/auth/token (refresh and logout:
services/api/routers/sessions.py).

Throttles (services.infra.throttle): sign-in attempts per (email, client address) and per
address, registrations per address; past a limit, 429 with Retry-After (a backoff, never a
lock). In development, loopback clients skip the per-address throttles (API.md: local demos
and benchmarks create thousands of users from one address). A stored password hash weaker
than the configured cost is replaced at the next successful sign-in.
"""

from __future__ import annotations

import asyncio
import uuid

from fastapi import APIRouter, Request

from schemas.api import RegisterRequest, RegisterResponse, TokenRequest, TokenResponse
from services.api.deps import Container, Deps
from services.api.errors import EmailTaken, TooManyAttempts, TooManyRequests, WrongPassword
from services.app.sessions import open_session
from services.infra.auth import Principal, hash_password, needs_rehash, verify_password
from services.infra.db.repositories.base import Conflict
from services.infra.db.repositories.users import (
    create_user,
    get_user_by_email,
    set_password_hash,
)
from services.infra.throttle import count_attempts, forget, is_loopback, key_part

router = APIRouter()

FAILED_LOGIN_WINDOW_S = 300
REGISTRATION_WINDOW_S = 3600


def client_address(request: Request, c: Container) -> tuple[str, bool]:
    """The client address, and whether per-address throttles apply to it."""
    address = request.client.host if request.client else "unknown"
    exempt = c.settings.environment == "development" and is_loopback(address)
    return address, not exempt


@router.post("/v1/auth/register", status_code=201, response_model=RegisterResponse)
async def register(body: RegisterRequest, request: Request, c: Deps) -> RegisterResponse:
    address, per_address = client_address(request, c)
    if per_address:
        limit = c.settings.registrations_per_address_per_hour
        key = f"register:addr:{key_part(address)}"
        wait = await count_attempts(c.redis, [(key, limit)], REGISTRATION_WINDOW_S)
        if wait is not None:
            raise TooManyRequests(headers={"Retry-After": str(wait)})
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
async def token(body: TokenRequest, request: Request, c: Deps) -> TokenResponse:
    email = body.email.strip().lower()
    address, per_address = client_address(request, c)
    pair_key = f"login:pair:{key_part(email)}:{key_part(address)}"
    counters = [(pair_key, c.settings.login_attempts_per_5min)]
    if per_address:
        counters.append(
            (f"login:addr:{key_part(address)}", c.settings.login_attempts_per_address_per_5min)
        )
    wait = await count_attempts(c.redis, counters, FAILED_LOGIN_WINDOW_S)
    if wait is not None:
        raise TooManyAttempts(headers={"Retry-After": str(wait)})
    async with c.engine.connect() as conn:
        user = await get_user_by_email(conn, email)
    stored = user.password_hash if user else c.dummy_hash  # same work for unknown emails
    ok = await asyncio.to_thread(verify_password, body.password, stored)
    if user is None or not ok:
        raise WrongPassword()
    await forget(c.redis, pair_key)  # the owner's own successes clear its backoff
    if needs_rehash(stored, c.settings.password_hash_n):
        rehashed = await asyncio.to_thread(hash_password, body.password, c.settings.password_hash_n)
        async with c.engine.begin() as conn:
            await set_password_hash(conn, str(user.id), stored, rehashed)
    ttl, refresh_ttl = c.settings.access_token_ttl_s, c.settings.refresh_token_ttl_s
    issued = c.issuer.issue(Principal(str(user.id), user.role), ttl)
    refresh = await open_session(c.engine, str(user.id), refresh_ttl)
    return TokenResponse(
        access_token=issued, expires_in=ttl, refresh_token=refresh, refresh_expires_in=refresh_ttl
    )
