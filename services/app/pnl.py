"""Profit and loss of copies: per subscription and symbol for a follower, per symbol over all
followers for a master (aggregates only). The maths is replication.pnl (average cost); here the
fills are read and the marks asked of the brokers (each account's broker `last_price`)."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from replication.pnl import Fill, PositionPnl, position_pnl, total
from schemas.common import Side
from services.infra.brokerage import BrokerFactory
from services.infra.db.repositories.accounts import SealedAccount
from services.infra.db.repositories.pnl import (
    CopyFill,
    copy_fills,
    master_account_ids,
    sealed_accounts,
)

log = logging.getLogger("copytrade.pnl")

Unseal = Callable[[str, bytes], dict[str, Any]]


@dataclass(frozen=True)
class PnlLine:
    """One position's P&L. A master's lines carry no subscription, master or account."""

    symbol: str
    pnl: PositionPnl
    mark: Decimal | None
    subscription_id: str | None = None
    master_id: str | None = None
    followers: int | None = None


@dataclass(frozen=True)
class Marks:
    """Last prices, asked once per (account, symbol)."""

    factory: BrokerFactory
    unseal: Unseal

    async def of(
        self, engine: AsyncEngine, wanted: set[tuple[str, str]]
    ) -> dict[tuple[str, str], Decimal | None]:
        if not wanted:
            return {}
        async with engine.connect() as conn:
            accounts = {
                str(a.account_id): a
                for a in await sealed_accounts(conn, sorted({a for a, _ in wanted}))
            }
        keys = sorted(k for k in wanted if k[0] in accounts)
        prices = await asyncio.gather(*(self._price(accounts[a], s) for a, s in keys))
        return dict(zip(keys, prices, strict=True))

    async def _price(self, account: SealedAccount, symbol: str) -> Decimal | None:
        try:
            broker = self.factory.for_sealed(
                str(account.account_id), account.broker, account.credentials, self.unseal
            )
            return await broker.last_price(symbol)
        except Exception:  # a price we cannot get leaves unrealized unknown, not the answer
            log.warning("no last price for %s at %s", symbol, account.account_id, exc_info=True)
            return None


def _fill(row: CopyFill) -> Fill:
    return Fill(Side(row.side), row.filled_qty, row.filled_avg_price, row.fees)


def _split(rows: Sequence[CopyFill], since: datetime | None) -> tuple[list[Fill], list[Fill]]:
    before = [_fill(r) for r in rows if since is not None and r.created_at < since]
    window = [_fill(r) for r in rows if since is None or r.created_at >= since]
    return before, window


def _by_position(rows: Sequence[CopyFill]) -> dict[tuple[str, str], list[CopyFill]]:
    grouped: dict[tuple[str, str], list[CopyFill]] = defaultdict(list)
    for row in rows:
        grouped[(str(row.subscription_id), row.symbol)].append(row)
    return grouped


async def follower_pnl(
    engine: AsyncEngine,
    marks: Marks,
    follower_id: str,
    master_id: str | None,
    since: datetime | None,
    until: datetime | None,
) -> list[PnlLine]:
    """Per subscription and symbol; unrealized at the follower account's broker's last price."""
    async with engine.connect() as conn:
        rows = await copy_fills(conn, follower_id=follower_id, master_id=master_id, until=until)
    grouped = _by_position(rows)
    first = {key: group[0] for key, group in grouped.items()}
    prices = await marks.of(engine, {(str(r.account_id), r.symbol) for r in first.values()})
    lines = []
    for (subscription_id, symbol), group in grouped.items():
        mark = prices.get((str(first[(subscription_id, symbol)].account_id), symbol))
        before, window = _split(group, since)
        lines.append(
            PnlLine(
                symbol,
                position_pnl(before, window, mark),
                mark,
                subscription_id=subscription_id,
                master_id=str(group[0].master_id),
            )
        )
    return sorted(lines, key=lambda line: (line.master_id or "", line.symbol))


async def master_pnl(
    engine: AsyncEngine,
    marks: Marks,
    master_id: str,
    since: datetime | None,
    until: datetime | None,
) -> list[PnlLine]:
    """Per symbol over all followers' copies; marked at the master's (first) account's broker."""
    async with engine.connect() as conn:
        rows = await copy_fills(conn, master_id=master_id, until=until)
        accounts = await master_account_ids(conn, master_id)
    symbols = sorted({row.symbol for row in rows})
    marked_at = accounts[0] if accounts else None
    wanted = {(marked_at, s) for s in symbols} if marked_at else set()
    prices = await marks.of(engine, wanted)
    per_symbol: dict[str, list[PositionPnl]] = defaultdict(list)
    for (_, symbol), group in _by_position(rows).items():
        mark = prices.get((marked_at, symbol)) if marked_at else None
        per_symbol[symbol].append(position_pnl(*_split(group, since), mark))
    return [
        PnlLine(
            symbol,
            _aggregate(per_symbol[symbol]),
            prices.get((marked_at, symbol)) if marked_at else None,
            followers=len(per_symbol[symbol]),
        )
        for symbol in symbols
    ]


def _aggregate(parts: Sequence[PositionPnl]) -> PositionPnl:
    return PositionPnl(
        position=sum((p.position for p in parts), Decimal(0)),
        average_cost=None,  # an average over followers' books says nothing useful
        realized=sum((p.realized for p in parts), Decimal(0)),
        unrealized=total([p.unrealized for p in parts]),
        fees=total([p.fees for p in parts]),
        fills=sum(p.fills for p in parts),
    )
