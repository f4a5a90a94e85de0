"""What every router shares: the container of process-wide clients and the caller's identity."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from services.api.dashboard.gateway import Gateway
from services.api.errors import Forbidden, Unauthorized
from services.app.admission import Admission
from services.app.outbox import PublishedMarks
from services.infra.auth import Principal, TokenIssuer
from services.infra.wiring import Runtime


@dataclass
class Container(Runtime):
    """The process runtime (services.infra.wiring) plus what only the API needs."""

    issuer: TokenIssuer
    dummy_hash: str
    gateway: Gateway
    published: PublishedMarks
    admission: Admission


async def container(request: Request) -> Container:
    c: Container = request.app.state.container
    return c


Deps = Annotated[Container, Depends(container)]


async def principal(request: Request, c: Deps) -> Principal:
    """The caller of a bearer token; a bad token raises TokenError (401 with its code)."""
    # async on purpose (no I/O here): a plain def would hop to a worker thread per request.
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized()
    return c.issuer.verify(token.strip())


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

    return check


MasterAuth = Annotated[Principal, Depends(role("master"))]
FollowerAuth = Annotated[Principal, Depends(role("follower"))]
AdminAuth = Annotated[Principal, Depends(role("admin"))]
