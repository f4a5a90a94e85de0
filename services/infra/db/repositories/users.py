"""Users: sign-up and sign-in lookups."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.infra.db.repositories.base import Conflict, Row, fetch_one


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


async def get_user_by_email(conn: AsyncConnection, email: str) -> Row | None:
    return fetch_one(
        await conn.execute(
            text("SELECT id, email, password_hash, role FROM users WHERE email = :email"),
            {"email": email},
        )
    )


async def get_user(conn: AsyncConnection, user_id: str) -> Row | None:
    return fetch_one(
        await conn.execute(
            text("SELECT id, email, role FROM users WHERE id = :id"), {"id": user_id}
        )
    )
