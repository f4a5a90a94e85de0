"""Passwords (scrypt) and JWTs (PyJWT, pinned algorithm, required claims)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
import uuid
from dataclasses import dataclass, field

import jwt

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["exp", "iat", "sub", "aud", "iss"]
WS_AUDIENCE_SUFFIX = "-ws"
LEEWAY_S = 5
VERIFIED_CACHE_MAX = 10_000


# OWASP Password Storage Cheat Sheet: scrypt N=2^17, r=8, p=1 (128 MiB per hash).
OWASP_SCRYPT_N = 2**17
MAX_SCRYPT_N = 2**20


def _scrypt(password: str, salt: bytes, n: int) -> bytes:
    # maxmem must exceed 128 * N * r bytes, or hashlib refuses N >= 2^14 with r = 8.
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=8, p=1, dklen=32, maxmem=256 * n * 8 + 2**20
    )


def hash_password(password: str, n: int = OWASP_SCRYPT_N) -> str:
    salt = os.urandom(16)
    digest = _scrypt(password, salt, n)
    return f"scrypt${n}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n_text, salt_b64, digest_b64 = stored.split("$")
        n = int(n_text)
        if scheme != "scrypt" or not 2 <= n <= MAX_SCRYPT_N:
            return False
        digest = _scrypt(password, base64.b64decode(salt_b64), n)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, base64.b64decode(digest_b64))


def needs_rehash(stored: str, n: int) -> bool:
    """Whether a stored hash is weaker than the configured cost (rehash it at sign-in)."""
    try:
        scheme, n_text, _, _ = stored.split("$")
        return scheme != "scrypt" or int(n_text) < n
    except ValueError:
        return True


@dataclass(frozen=True)
class Principal:
    user_id: str
    role: str
    expires_at: int | None = None  # the access token's exp (a WebSocket session ends with it)
    token_id: str | None = None  # the token's jti (a socket token is spent once by it)


class TokenError(Exception):
    """A token that does not verify; `code` says why (the API answers it with a 401)."""

    code = "invalid_token"


class TokenExpired(TokenError):
    code = "token_expired"


@dataclass(frozen=True)
class TokenIssuer:
    secret: str
    issuer: str
    audience: str
    # Tokens this process verified, until their exp (+ the leeway): a client sends the same
    # token with every request, and its signature and claims cannot change. Only successes
    # are kept; an expired one goes through PyJWT again (and is refused as expired).
    _verified: dict[tuple[str, bool], tuple[float, Principal]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def issue(
        self,
        principal: Principal,
        ttl_s: int,
        *,
        websocket: bool = False,
        session_expires_at: int | None = None,
    ) -> str:
        now = int(time.time())
        claims: dict[str, object] = {
            "sub": principal.user_id,
            "role": principal.role,
            "iss": self.issuer,
            "aud": self.audience + (WS_AUDIENCE_SUFFIX if websocket else ""),
            "iat": now,
            "nbf": now,
            "exp": now + ttl_s,
            "jti": uuid.uuid4().hex,
        }
        if session_expires_at is not None:
            claims["sexp"] = session_expires_at
        return jwt.encode(claims, self.secret, algorithm=ALGORITHM)

    def verify(self, token: str, *, websocket: bool = False) -> Principal:
        known = self._verified.get((token, websocket))
        if known is not None and time.time() < known[0]:
            return known[1]
        principal, valid_until = self._decode(token, websocket)
        if len(self._verified) >= VERIFIED_CACHE_MAX:
            now = time.time()
            live = {k: v for k, v in self._verified.items() if v[0] > now}
            self._verified.clear()
            if len(live) < VERIFIED_CACHE_MAX // 2:
                self._verified.update(live)
        self._verified[(token, websocket)] = (valid_until, principal)
        return principal

    def _decode(self, token: str, websocket: bool) -> tuple[Principal, float]:
        try:
            claims = jwt.decode(
                token,
                self.secret,
                algorithms=[ALGORITHM],
                audience=self.audience + (WS_AUDIENCE_SUFFIX if websocket else ""),
                issuer=self.issuer,
                options={"require": REQUIRED_CLAIMS},
                leeway=LEEWAY_S,
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenExpired("token expired") from exc
        except jwt.PyJWTError as exc:
            raise TokenError("invalid token") from exc
        role = claims.get("role")
        sub = claims.get("sub")
        if role not in ("master", "follower", "admin") or not isinstance(sub, str):
            raise TokenError("invalid token")
        expires = claims.get("sexp", claims["exp"]) if websocket else claims["exp"]
        if not isinstance(expires, int):
            raise TokenError("invalid token")
        jti = claims.get("jti")
        principal = Principal(
            user_id=sub,
            role=role,
            expires_at=expires,
            token_id=jti if isinstance(jti, str) else None,
        )
        return principal, float(claims["exp"]) + LEEWAY_S  # PyJWT refuses it from then on
