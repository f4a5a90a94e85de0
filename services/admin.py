"""Operator commands: `python -m services.admin create-admin --email E` (password on stdin)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import uuid

from services.infra.auth import hash_password
from services.infra.db.engine import make_engine
from services.infra.db.repositories.base import Conflict
from services.infra.db.repositories.users import create_user
from services.infra.settings import Settings


async def create_admin(settings: Settings, email: str, password: str) -> str:
    _, database_url, _ = (
        settings.require_urls() if settings.nats_url else (None, settings.database_url, None)
    )
    if not database_url:
        raise SystemExit("COPYTRADE_DATABASE_URL must be set")
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    user_id = str(uuid.uuid4())
    try:
        async with engine.begin() as conn:
            await create_user(
                conn,
                user_id,
                email.strip().lower(),
                hash_password(password, settings.password_hash_n),
                "admin",
            )
    finally:
        await engine.dispose()
    return user_id


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m services.admin")
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create-admin", help="create an admin user (password from stdin)")
    create.add_argument("--email", required=True)
    args = parser.parse_args()
    password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline()
    password = password.rstrip("\n")
    if len(password) < 12:
        raise SystemExit("an admin password needs at least 12 characters")
    try:
        user_id = asyncio.run(create_admin(Settings.from_env(), args.email, password))
    except Conflict:
        raise SystemExit("that email is already registered") from None
    print(user_id)


if __name__ == "__main__":
    main()
