"""Users: sign-up and sign-in lookups."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.infra.db.repositories.base import Conflict, Connection, columns, fetch_one_as, text


@dataclass(frozen=True, slots=True)
class User:
    id: UUID
    email: str
    role: str


@dataclass(frozen=True, slots=True)
class Login:
    """What signing in compares: never leaves the auth router."""

    id: UUID
    email: str
    password_hash: str
    role: str


async def create_user(
    conn: AsyncConnection, user_id: str, email: str, password_hash: str, role: str
) -> None:
    try:
        async with conn.begin_nested():
            await conn.execute(
                text(
                    "INSERT INTO users (id, email, password_hash, role) "
                    "VALUES (:id, :email, :password_hash, :role)"
                ),
                {"id": user_id, "email": email, "password_hash": password_hash, "role": role},
            )
    except IntegrityError as exc:
        raise Conflict("email_taken") from exc


async def get_user_by_email(conn: Connection, email: str) -> Login | None:
    return fetch_one_as(
        await conn.execute(
            text(f"SELECT {columns(Login)} FROM users WHERE email = :email"), {"email": email}
        ),
        Login,
    )


async def get_user(conn: Connection, user_id: str) -> User | None:
    return fetch_one_as(
        await conn.execute(
            text(f"SELECT {columns(User)} FROM users WHERE id = :id"), {"id": user_id}
        ),
        User,
    )


async def set_password_hash(
    conn: Connection, user_id: str, previous: str, password_hash: str
) -> None:
    """Replace a user's hash, only if it is still `previous` (a concurrent change wins)."""
    await conn.execute(
        text("UPDATE users SET password_hash = :new WHERE id = :id AND password_hash = :previous"),
        {"id": user_id, "previous": previous, "new": password_hash},
    )
