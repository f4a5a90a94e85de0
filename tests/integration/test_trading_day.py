"""Daily order counters on a real PostgreSQL follow each account's broker calendar: a Kite
account's counter rolls over at Kolkata midnight (18:30 UTC) while a simulator (New York)
account in the same batch keeps counting."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from replication.model import PlannedLeg
from services.infra.brokerage import broker_day
from services.infra.db.repositories.accounts import insert_account
from services.infra.db.repositories.risk import lock_risk, spend_risk
from services.infra.db.repositories.users import create_user
from tests.builders import planned_leg


def _leg(account_id: str, broker: str) -> PlannedLeg:
    return planned_leg(account_id=account_id, broker=broker, symbol="INFY")


async def test_the_daily_counter_of_a_kite_account_rolls_over_at_kolkata_midnight(
    engine: AsyncEngine,
) -> None:
    brokers: dict[str, str] = {}
    async with engine.begin() as conn:
        for broker in ("kite", "sim"):
            user_id, account_id = str(uuid.uuid4()), str(uuid.uuid4())
            await create_user(conn, user_id, f"{user_id}@x.test", "h", "follower")
            await insert_account(conn, account_id, user_id, broker, broker, b"x")
            brokers[account_id] = broker

    async def one_order_each(instant: str) -> dict[str, int]:
        """Count one order per account at `instant` (as the replicator records a batch: the
        days are each account's own) and return the counters read before it."""
        now = datetime.fromisoformat(instant)
        days = {account: broker_day(broker, now) for account, broker in brokers.items()}
        async with engine.begin() as conn:
            risk = await lock_risk(conn, list(brokers), days, "INFY")
            await spend_risk(conn, [_leg(a, b) for a, b in brokers.items()], days)
        return {brokers[account]: row.orders_today for account, row in risk.items()}

    assert await one_order_each("2026-03-10T15:00:00+00:00") == {"kite": 0, "sim": 0}
    assert await one_order_each("2026-03-10T18:29:59+00:00") == {"kite": 1, "sim": 1}
    # 18:30 UTC is midnight in Kolkata: Kite's day is new, New York's is not.
    assert await one_order_each("2026-03-10T18:30:00+00:00") == {"kite": 0, "sim": 2}
    assert await one_order_each("2026-03-10T19:00:00+00:00") == {"kite": 1, "sim": 3}
    # 04:00 UTC is midnight in New York (EDT).
    assert await one_order_each("2026-03-11T04:00:00+00:00") == {"kite": 2, "sim": 0}

    # A single day for every account (the replace path's one-account call) still works.
    async with engine.begin() as conn:
        kite = next(a for a, b in brokers.items() if b == "kite")
        one_day = broker_day("kite", datetime.fromisoformat("2026-03-11T04:00:00+00:00"))
        risk = await lock_risk(conn, [kite], one_day, "INFY")
    assert risk[kite].orders_today == 3
