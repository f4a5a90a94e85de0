"""Sessions: POST /v1/auth/refresh (rotate a refresh token) and POST /v1/auth/logout.

The refresh token is the credential here (no bearer token needed: the access token it renews
has usually expired). Refreshes count against the per-address sign-in throttle; the rules of
rotation, reuse detection and revocation live in services.app.sessions.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from schemas.api import RefreshRequest, TokenResponse
from services.api.deps import Deps
from services.api.errors import TooManyAttempts
from services.api.routers.auth import FAILED_LOGIN_WINDOW_S, client_address
from services.app.sessions import revoke, rotate
from services.infra.auth import Principal
from services.infra.throttle import count_attempts, key_part

router = APIRouter(tags=["auth"])


@router.post("/v1/auth/refresh", response_model=TokenResponse)
async def refresh(body: RefreshRequest, request: Request, c: Deps) -> TokenResponse:
    address, per_address = client_address(request, c)
    if per_address:
        counters = [
            (f"login:addr:{key_part(address)}", c.settings.login_attempts_per_address_per_5min)
        ]
        wait = await count_attempts(c.redis, counters, FAILED_LOGIN_WINDOW_S)
        if wait is not None:
            raise TooManyAttempts(headers={"Retry-After": str(wait)})
    ttl, refresh_ttl = c.settings.access_token_ttl_s, c.settings.refresh_token_ttl_s
    rotated = await rotate(c.engine, body.refresh_token, refresh_ttl)
    issued = c.issuer.issue(Principal(rotated.user_id, rotated.role), ttl)
    return TokenResponse(
        access_token=issued,
        expires_in=ttl,
        refresh_token=rotated.refresh_token,
        refresh_expires_in=refresh_ttl,
    )


@router.post("/v1/auth/logout", status_code=204, response_class=Response)
async def logout(body: RefreshRequest, c: Deps) -> Response:
    await revoke(c.engine, body.refresh_token)
    return Response(status_code=204)
