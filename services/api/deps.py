"""What every router shares: the container of process-wide clients and the caller's identity."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant

from services.api.dashboard.gateway import Gateway
from services.api.errors import Forbidden, RateLimited, Unauthorized
from services.app.admission import Admission
from services.app.outbox import PublishedMarks
from services.infra.auth import Principal, TokenError, TokenIssuer
from services.infra.throttle import TokenBuckets
from services.infra.wiring import Runtime


@dataclass
class Container(Runtime):
    """The process runtime (services.infra.wiring) plus what only the API needs."""

    issuer: TokenIssuer
    dummy_hash: str
    gateway: Gateway
    published: PublishedMarks
    admission: Admission
    writes: TokenBuckets | None = None  # per-user write rate (None: off)


async def container(request: Request) -> Container:
    c: Container = request.app.state.container
    return c


Deps = Annotated[Container, Depends(container)]


WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


async def principal(request: Request, c: Deps) -> Principal:
    """The caller of a bearer token; a bad token raises TokenError (401 with its code). A
    write past the caller's rate (Container.writes) is refused 429 rate_limited."""
    # async on purpose: a plain def would hop to a worker thread per request.
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized()
    user = c.issuer.verify(token.strip())
    if c.writes is not None and request.method in WRITES:
        wait = await c.writes.take(user.user_id)
        if wait is not None:
            raise RateLimited(headers={"Retry-After": str(max(1, math.ceil(wait)))})
    return user


Auth = Annotated[Principal, Depends(principal)]


def require(user: Principal, *roles: str) -> None:
    """Refuse (403) a caller without one of these roles (inside a handler: prefer the role
    dependencies below, which refuse before the body and the path are validated)."""
    if user.role not in roles:
        raise Forbidden(f"this needs the {' or '.join(roles)} role")


def role(*roles: str) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency: the caller, refused (403) without one of these roles.

    FastAPI solves dependencies before it validates path, query and body, and a dependency that
    raises stops there: a follower sending a malformed order hears 403, not 422."""

    async def check(user: Auth) -> Principal:
        require(user, *roles)
        return user

    check.roles = roles  # type: ignore[attr-defined]  # read by caller_refusal below
    return check


def route_needs(dependant: Dependant) -> tuple[bool, tuple[str, ...] | None]:
    """Whether a route's dependencies take a bearer token, and the roles they require."""
    bearer, roles = False, None
    pending = [dependant]
    while pending:
        current = pending.pop()
        bearer = bearer or current.call is principal
        roles = getattr(current.call, "roles", None) or roles
        pending.extend(current.dependencies)
    return bearer, roles


def caller_refusal(request: Request) -> Exception | None:
    """The 401/403 a route that takes a bearer token owes a caller whose body could not even be
    parsed (FastAPI parses the body before it solves dependencies, so without this a request
    that is not JSON hears 422 before "who are you"). Runs on that error path only."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return None
    bearer, roles = route_needs(dependant)
    if not bearer:
        return None
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return Unauthorized()
    try:
        user = request.app.state.container.issuer.verify(token.strip())
    except TokenError as exc:
        return exc
    if roles and user.role not in roles:
        return Forbidden(f"this needs the {' or '.join(roles)} role")
    return None


MasterAuth = Annotated[Principal, Depends(role("master"))]
FollowerAuth = Annotated[Principal, Depends(role("follower"))]
AdminAuth = Annotated[Principal, Depends(role("admin"))]
