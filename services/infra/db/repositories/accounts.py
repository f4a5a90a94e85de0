"""Broker accounts (credentials stay sealed here), and the poller's cursors per master account."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from replication.state import OPEN as OPEN_LEG_STATUSES
from replication.state import OPEN_AT_BROKER
from services.infra.db.repositories.base import (
    Connection,
    columns,
    fetch_all_as,
    fetch_one_as,
    text,
)


@dataclass(frozen=True, slots=True)
class Account:
    id: UUID
    user_id: UUID
    broker: str
    label: str
    halted: bool
    created_at: datetime
    deleting_at: datetime | None = None  # DELETE ?positions=close: retired once flat


@dataclass(frozen=True, slots=True)
class SealedAccount:
    """What building a broker adapter needs: the account, its broker, its sealed credentials."""

    account_id: UUID
    broker: str
    credentials: bytes


@dataclass(frozen=True, slots=True)
class MasterAccount:
    account_id: UUID
    master_id: UUID
    broker: str
    credentials: bytes


async def insert_account(
    conn: Connection,
    account_id: str,
    user_id: str,
    broker: str,
    label: str,
    credentials: bytes,
) -> None:
    await conn.execute(
        text(
            "INSERT INTO accounts (id, user_id, broker, label, credentials) "
            "VALUES (:id, :user_id, :broker, :label, :credentials)"
        ),
        {
            "id": account_id,
            "user_id": user_id,
            "broker": broker,
            "label": label,
            "credentials": credentials,
        },
    )


_ACCOUNT_COLUMNS = columns(Account)
_NOT_FINAL = sorted(s.value for s in OPEN_LEG_STATUSES | OPEN_AT_BROKER)


async def accounts_of_user(conn: Connection, user_id: str) -> list[Account]:
    return fetch_all_as(
        await conn.execute(
            text(
                f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE user_id = :u "
                "AND deleted_at IS NULL ORDER BY created_at"
            ),
            {"u": user_id},
        ),
        Account,
    )


async def get_account(conn: Connection, account_id: str, user_id: str) -> Account | None:
    return fetch_one_as(
        await conn.execute(
            text(
                f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE id = :id AND user_id = :u "
                "AND deleted_at IS NULL"
            ),
            {"id": account_id, "u": user_id},
        ),
        Account,
    )


async def set_account_halted(
    conn: Connection, account_id: str, user_id: str, halted: bool
) -> Account | None:
    """Halt or resume an owned account; an account being deleted stays halted (None)."""
    return fetch_one_as(
        await conn.execute(
            text(
                f"UPDATE accounts SET halted = :h, updated_at = now() "
                "WHERE id = :id AND user_id = :u AND deleted_at IS NULL "
                "AND (deleting_at IS NULL OR :h) "
                f"RETURNING {_ACCOUNT_COLUMNS}"
            ),
            {"h": halted, "id": account_id, "u": user_id},
        ),
        Account,
    )


async def master_accounts(conn: Connection) -> list[MasterAccount]:
    return fetch_all_as(
        await conn.execute(
            text(
                "SELECT a.id AS account_id, a.user_id AS master_id, a.broker, a.credentials "
                "FROM accounts a JOIN users u ON u.id = a.user_id "
                "WHERE u.role = 'master' AND NOT a.halted ORDER BY a.id"
            )
        ),
        MasterAccount,
    )


async def get_cursor(conn: Connection, account_id: str) -> datetime | None:
    value: datetime | None = (
        await conn.execute(
            text("SELECT cursor_at FROM poller_cursors WHERE account_id = :a"), {"a": account_id}
        )
    ).scalar_one_or_none()
    return value


async def set_cursor(conn: Connection, account_id: str, cursor_at: datetime) -> None:
    await conn.execute(
        text(
            "INSERT INTO poller_cursors (account_id, cursor_at) VALUES (:a, :c) "
            "ON CONFLICT (account_id) DO UPDATE SET cursor_at = GREATEST("
            "poller_cursors.cursor_at, EXCLUDED.cursor_at), updated_at = now()"
        ),
        {"a": account_id, "c": cursor_at},
    )


async def get_sealed_account(
    conn: Connection, account_id: str, user_id: str
) -> SealedAccount | None:
    """The caller's account (not a deleted one) with what building its broker adapter needs."""
    return fetch_one_as(
        await conn.execute(
            text(
                "SELECT id AS account_id, broker, credentials FROM accounts "
                "WHERE id = :id AND user_id = :u AND deleted_at IS NULL"
            ),
            {"id": account_id, "u": user_id},
        ),
        SealedAccount,
    )


async def update_account(
    conn: Connection,
    account_id: str,
    user_id: str,
    label: str | None,
    credentials: bytes | None,
) -> Account | None:
    """Change an owned account's label and/or sealed credentials; None when not the owner's."""
    return fetch_one_as(
        await conn.execute(
            text(
                "UPDATE accounts SET label = COALESCE(:label, label), "
                "credentials = COALESCE(:credentials, credentials) "
                "WHERE id = :id AND user_id = :user_id AND deleted_at IS NULL "
                f"RETURNING {columns(Account)}"
            ),
            {"id": account_id, "user_id": user_id, "label": label, "credentials": credentials},
        ),
        Account,
    )


async def account_in_use(conn: Connection, account_id: str) -> bool:
    """Whether copies into or from the account are open: a subscription not ended, or a leg
    that has not reached a terminal status (resting at the broker included: once the account
    is gone nothing could cancel or follow it)."""
    result = await conn.execute(
        text(
            "SELECT EXISTS (SELECT 1 FROM subscriptions WHERE account_id = :id "
            "AND ending_at IS NULL) OR EXISTS (SELECT 1 FROM legs WHERE account_id = :id "
            "AND status = ANY(:not_final))"
        ),
        {"id": account_id, "not_final": _NOT_FINAL},
    )
    return bool(result.scalar())


async def delete_account(conn: Connection, account_id: str, user_id: str, tombstone: bytes) -> bool:
    """Retire an owned account: its orders and legs keep referencing the row, so it stays as a
    halted tombstone whose credentials are `tombstone` (a sealed empty object); its
    subscriptions go."""
    result = await conn.execute(
        text(
            "UPDATE accounts SET deleted_at = now(), halted = true, credentials = :tombstone, "
            "label = '(deleted)', updated_at = now() "
            "WHERE id = :id AND user_id = :user_id AND deleted_at IS NULL RETURNING id"
        ),
        {"id": account_id, "user_id": user_id, "tombstone": tombstone},
    )
    if result.first() is None:
        return False
    await conn.execute(text("DELETE FROM subscriptions WHERE account_id = :id"), {"id": account_id})
    return True


async def begin_deletion(conn: Connection, account_id: str, user_id: str) -> Account | None:
    """Mark an owned account as being deleted (DELETE ?positions=close): halted (nothing new
    opens in it), its subscriptions ended (the master's exits still flow until the flatten
    closes what is left). None when it is not the owner's or a deletion already began."""
    row = fetch_one_as(
        await conn.execute(
            text(
                "UPDATE accounts SET deleting_at = now(), halted = true, updated_at = now() "
                "WHERE id = :id AND user_id = :u AND deleted_at IS NULL "
                f"AND deleting_at IS NULL RETURNING {_ACCOUNT_COLUMNS}"
            ),
            {"id": account_id, "u": user_id},
        ),
        Account,
    )
    if row is not None:
        await conn.execute(
            text(
                "UPDATE subscriptions SET ending_at = COALESCE(ending_at, now()), "
                "updated_at = now() WHERE account_id = :id"
            ),
            {"id": account_id},
        )
    return row


async def flat_deleting_accounts(conn: Connection) -> list[Account]:
    """Accounts being deleted whose flatten is done and which no open leg uses any more
    (locked: one sweeper retires each)."""
    return fetch_all_as(
        await conn.execute(
            text(
                f"SELECT {columns(Account, 'a')} FROM accounts a "
                "WHERE a.deleting_at IS NOT NULL AND a.deleted_at IS NULL "
                "AND NOT EXISTS (SELECT 1 FROM flatten_requests f "
                "WHERE f.scope = 'account:' || a.id::text AND f.done_at IS NULL) "
                "AND NOT EXISTS (SELECT 1 FROM legs l WHERE l.account_id = a.id "
                "AND l.status = ANY(:not_final)) "
                "ORDER BY a.deleting_at LIMIT 100 FOR UPDATE OF a SKIP LOCKED"
            ),
            {"not_final": _NOT_FINAL},
        ),
        Account,
    )


async def all_sealed(conn: Connection) -> list[SealedAccount]:
    """Every account's sealed credentials (key rotation)."""
    return fetch_all_as(
        await conn.execute(
            text("SELECT id AS account_id, broker, credentials FROM accounts ORDER BY id")
        ),
        SealedAccount,
    )


async def reseal(conn: Connection, account_id: str, previous: bytes, sealed: bytes) -> bool:
    """Replace sealed credentials only if they are still `previous` (a concurrent change wins)."""
    result = await conn.execute(
        text(
            "UPDATE accounts SET credentials = :sealed "
            "WHERE id = :id AND credentials = :previous RETURNING id"
        ),
        {"id": account_id, "previous": previous, "sealed": sealed},
    )
    return result.first() is not None
