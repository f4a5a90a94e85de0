"""Operator commands:

- `python -m services.admin create-admin --email E` (password on stdin)
- `python -m services.admin rotate-keys`: re-encrypt every stored broker credential under the
  newest key (the first of COPYTRADE_CREDENTIAL_KEYS); run it after putting a new key first
  and before removing an old one. Prints counts only, never a credential.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import uuid

from services.infra.auth import hash_password
from services.infra.crypto import CredentialCipher
from services.infra.db.engine import make_engine
from services.infra.db.repositories.accounts import all_sealed, reseal
from services.infra.db.repositories.base import Conflict
from services.infra.db.repositories.users import create_user
from services.infra.settings import Settings


def _database_url(settings: Settings) -> str:
    _, database_url, _ = (
        settings.require_urls() if settings.nats_url else (None, settings.database_url, None)
    )
    if not database_url:
        raise SystemExit("COPYTRADE_DATABASE_URL must be set")
    return database_url


async def rotate_keys(settings: Settings) -> tuple[int, int]:
    """Re-encrypt every credential not sealed under the newest key: (re-encrypted, total).
    Each account is its own transaction, guarded by its previous ciphertext (a credential
    changed meanwhile is already under the newest key)."""
    _, keys = settings.require_secrets()
    cipher = CredentialCipher.from_setting(keys)
    engine = make_engine(_database_url(settings), pool_size=1, max_overflow=0)
    rotated = 0
    try:
        async with engine.connect() as conn:
            accounts = await all_sealed(conn)
        for account in accounts:
            previous = bytes(account.credentials)
            if not cipher.needs_rotation(previous):
                continue
            account_id = str(account.account_id)
            sealed = cipher.encrypt(account_id, cipher.decrypt(account_id, previous))
            async with engine.begin() as conn:
                rotated += await reseal(conn, account_id, previous, sealed)
    finally:
        await engine.dispose()
    return rotated, len(accounts)


async def create_admin(settings: Settings, email: str, password: str) -> str:
    engine = make_engine(_database_url(settings), pool_size=1, max_overflow=0)
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
    sub.add_parser("rotate-keys", help="re-encrypt every credential under the newest key")
    args = parser.parse_args()
    if args.command == "rotate-keys":
        rotated, total = asyncio.run(rotate_keys(Settings.from_env()))
        print(f"re-encrypted {rotated} of {total} accounts under the newest key")
        return
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
