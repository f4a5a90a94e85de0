"""What every router shares: the container of process-wide clients and the caller's identity."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from services.api.dashboard.gateway import Gateway
from services.api.errors import Forbidden, Unauthorized
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
    """Refuse (403) a caller without one of these roles.

    Called inside handlers rather than as a dependency so that a body that does not validate
    still answers 422 before the role is looked at, as it always has."""
    if user.role not in roles:
        raise Forbidden(f"this needs the {' or '.join(roles)} role")
