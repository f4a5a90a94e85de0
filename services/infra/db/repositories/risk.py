"""Risk state: the copy ledger and the day counters, locked in account order so caps hold across
workers.

The copy ledger is per (subscription, symbol): copies belong to the subscription that made
them, so one master's exits, position fractions and max_position act on that master's copies
only, even when a follower account copies several masters; an account's total is the sum."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from replication.model import PlannedLeg
from services.infra.db.repositories.base import Connection, fetch_all, text

_LEDGER_UPSERT = (
    "INSERT INTO copy_positions (subscription_id, account_id, symbol, qty) "
    "SELECT b, a, s, sum(q) FROM unnest(CAST(:b AS uuid[]), CAST(:a AS uuid[]), "
    "CAST(:s AS text[]), CAST(:q AS numeric[])) AS v(b, a, s, q) "
    "GROUP BY b, a, s ORDER BY b, s "
    "ON CONFLICT (subscription_id, symbol) DO UPDATE SET qty = copy_positions.qty + EXCLUDED.qty"
)


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """A signed change of one subscription's copied position in one symbol."""

    subscription_id: str
    account_id: str
    symbol: str
    delta: Decimal


async def add_to_ledger(conn: Connection, entries: Sequence[LedgerEntry]) -> None:
    if not entries:
        return
    await conn.execute(
        text(_LEDGER_UPSERT),
        {
            "b": [e.subscription_id for e in entries],
            "a": [e.account_id for e in entries],
            "s": [e.symbol for e in entries],
            "q": [e.delta for e in entries],
        },
    )


@dataclass(frozen=True)
class RiskRow:
    """One follower account's locked risk state: its day counter and its copied positions,
    by subscription (symbol → signed quantity, non-zero; see lock_risk)."""

    orders_today: int
    copies: dict[str, dict[str, Decimal]]

    def copied(self, subscription_id: str, symbol: str) -> Decimal:
        """This subscription's copied position in `symbol`."""
        return self.copies.get(subscription_id, {}).get(symbol, Decimal(0))

    def others(self, subscription_id: str, symbol: str) -> Decimal:
        """What the account's other subscriptions copied in `symbol`."""
        return sum(
            (
                held.get(symbol, Decimal(0))
                for sub, held in self.copies.items()
                if sub != subscription_id
            ),
            Decimal(0),
        )


def _day_of(day: date | Mapping[str, date], account_id: str) -> date:
    """`day` is one trading day for every account, or each account's own (its broker's)."""
    return day if isinstance(day, date) else day[account_id]


async def _lock_counters(
    conn: Connection, ids: list[str], day: date | Mapping[str, date]
) -> list[dict[str, Any]]:
    """Lock the day counters of these accounts in id order (creating missing rows first)."""
    lock = text(
        "SELECT account_id, trading_day, orders_today FROM risk_accounts "
        "WHERE account_id = ANY(CAST(:ids AS uuid[])) ORDER BY account_id FOR UPDATE"
    )
    counters = fetch_all(await conn.execute(lock, {"ids": ids}))
    if len(counters) < len(ids):
        # First order for some accounts: create their rows (in id order), then lock those.
        # Rows that exist are already locked, so no lock is ever taken out of order.
        known = {str(row["account_id"]) for row in counters}
        missing = [a for a in ids if a not in known]
        await conn.execute(
            text(
                "INSERT INTO risk_accounts (account_id, trading_day) "
                "SELECT a, d FROM unnest(CAST(:ids AS uuid[]), CAST(:days AS date[])) AS u(a, d) "
                "ORDER BY a ON CONFLICT (account_id) DO NOTHING"
            ),
            {"ids": missing, "days": [_day_of(day, a) for a in missing]},
        )
        counters += fetch_all(await conn.execute(lock, {"ids": missing}))
    return counters


async def lock_risk(
    conn: Connection,
    account_ids: Sequence[str],
    day: date | Mapping[str, date],
    symbol: str,
    every_symbol_for: Collection[str] = (),
) -> dict[str, RiskRow]:
    """Lock the risk rows of these accounts (in id order, so concurrent workers never deadlock)
    and read their day counters and ledger. Hold the transaction until the legs are recorded.

    The ledger read is `symbol` only, plus every open symbol of the accounts in
    `every_symbol_for` (those with a max-open-positions cap): a follower with thousands of
    copied positions does not make every order read all of them."""
    if not account_ids:
        return {}
    ids = sorted(set(account_ids))
    counters = await _lock_counters(conn, ids, day)
    # A statement of its own, after the locks: it sees every ledger change committed before.
    ledger = fetch_all(
        await conn.execute(
            text(
                "SELECT account_id, subscription_id, symbol, qty FROM copy_positions "
                "WHERE account_id = ANY(CAST(:ids AS uuid[])) AND qty <> 0 "
                "AND (symbol = :symbol OR account_id = ANY(CAST(:wide AS uuid[])))"
            ),
            {"ids": ids, "symbol": symbol, "wide": sorted(set(every_symbol_for))},
        )
    )
    positions: dict[str, dict[str, dict[str, Decimal]]] = {}
    for row in ledger:
        by_subscription = positions.setdefault(str(row["account_id"]), {})
        by_subscription.setdefault(str(row["subscription_id"]), {})[row["symbol"]] = Decimal(
            row["qty"]
        )
    return {
        str(row["account_id"]): RiskRow(
            orders_today=int(row["orders_today"])
            if row["trading_day"] == _day_of(day, str(row["account_id"]))
            else 0,
            copies=positions.get(str(row["account_id"]), {}),
        )
        for row in counters
    }


async def spend_risk(
    conn: Connection, legs: Sequence[PlannedLeg], day: date | Mapping[str, date]
) -> None:
    """Count recorded follower legs against the day's orders and reserve their ledger."""
    planned = [leg for leg in legs if leg.qty is not None and leg.action != "master"]
    if not planned:
        return
    days = {leg.account_id: _day_of(day, leg.account_id) for leg in planned}
    # One statement: the day counters and the ledger reservation (rows already locked).
    await conn.execute(
        text(
            "WITH counted AS (UPDATE risk_accounts r SET orders_today = CASE "
            "WHEN r.trading_day = u.d THEN r.orders_today + 1 ELSE 1 END, trading_day = u.d "
            "FROM unnest(CAST(:ca AS uuid[]), CAST(:cd AS date[])) AS u(a, d) "
            "WHERE r.account_id = u.a) " + _LEDGER_UPSERT
        ),
        {
            "ca": list(days),
            "cd": list(days.values()),
            "b": [leg.subscription_id for leg in planned],
            "a": [leg.account_id for leg in planned],
            "s": [leg.symbol for leg in planned],
            "q": [leg.signed_qty for leg in planned],
        },
    )
