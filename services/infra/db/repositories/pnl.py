"""Fills of copies for P&L: each follower leg with fills, at its average fill price, oldest
first. Fees come from a leg's `details.fees` when its broker reported them (no adapter records
them today: the simulator's and Alpaca's orders carry no fees), else NULL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from services.infra.db.repositories.accounts import SealedAccount
from services.infra.db.repositories.base import Connection, Row, fetch_all_as, text


@dataclass(frozen=True, slots=True)
class CopyFill:
    subscription_id: UUID
    master_id: UUID
    account_id: UUID
    symbol: str
    side: str
    filled_qty: Decimal
    filled_avg_price: Decimal
    fees: Decimal | None
    created_at: datetime


_SELECT = (
    "SELECT subscription_id, master_id, account_id, symbol, side, filled_qty, "
    "filled_avg_price, CASE WHEN details ? 'fees' THEN CAST(details->>'fees' AS numeric) END, "
    "created_at FROM legs WHERE action <> 'master' AND subscription_id IS NOT NULL "
    "AND filled_qty > 0 AND filled_avg_price IS NOT NULL"
)


async def copy_fills(
    conn: Connection,
    *,
    follower_id: str | None = None,
    master_id: str | None = None,
    until: datetime | None = None,
) -> list[CopyFill]:
    """Filled copies of a follower (optionally of one master), or of all a master's followers,
    created before `until`, oldest first."""
    assert follower_id or master_id, "a follower, a master or both"
    sql: str = _SELECT
    params: Row = {}
    if follower_id is not None:
        sql += " AND follower_id = :f"
        params["f"] = follower_id
    if master_id is not None:
        sql += " AND master_id = :m"
        params["m"] = master_id
    if until is not None:
        sql += " AND created_at < :until"
        params["until"] = until
    sql += " ORDER BY created_at, id"
    return fetch_all_as(await conn.execute(text(sql), params), CopyFill)


async def sealed_accounts(conn: Connection, account_ids: list[str]) -> list[SealedAccount]:
    """What building these accounts' broker adapters needs (for their last prices)."""
    return fetch_all_as(
        await conn.execute(
            text(
                "SELECT id, broker, credentials FROM accounts "
                "WHERE id = ANY(CAST(:ids AS uuid[])) ORDER BY created_at, id"
            ),
            {"ids": account_ids},
        ),
        SealedAccount,
    )


async def master_account_ids(conn: Connection, master_id: str) -> list[str]:
    rows = await conn.execute(
        text("SELECT id FROM accounts WHERE user_id = :m ORDER BY created_at, id"),
        {"m": master_id},
    )
    return [str(row[0]) for row in rows.all()]
