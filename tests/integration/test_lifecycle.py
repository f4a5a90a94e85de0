"""The leg lifecycle in PostgreSQL follows the one transition table (replication.state).

Random broker answers, in random order, are driven through `settle_legs` against a real
database; whatever arrives, the recorded status is what the pure table allows, and a leg that
ends unfilled gives its ledger back exactly once.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from replication.plan import plan
from replication.state import UNFILLED_END, LegStatus, can_transition
from services.infra.db.engine import make_engine
from services.infra.db.repositories.legs import LegOutcome, insert_legs, settle_legs
from tests.integration.test_repositories import _order_with_followers

S = LegStatus


async def _one_submitting_leg(engine: AsyncEngine) -> tuple[str, str, Decimal]:
    order, targets = await _order_with_followers(engine, 1)
    leg = replace(plan(order, targets, datetime.now(UTC))[0], status=S.SUBMITTING)
    async with engine.begin() as conn:
        await insert_legs(conn, order.master_id, [leg], 10)
    return leg.leg_id, leg.account_id, leg.qty


async def _status_and_ledger(
    engine: AsyncEngine, leg_id: str, account_id: str
) -> tuple[str, Decimal]:
    async with engine.connect() as conn:
        status = (
            await conn.execute(text("SELECT status FROM legs WHERE id = :id"), {"id": leg_id})
        ).scalar_one()
        ledger = (
            await conn.execute(
                text("SELECT coalesce(sum(qty), 0) FROM copy_positions WHERE account_id = :a"),
                {"a": account_id},
            )
        ).scalar_one()
    return str(status), Decimal(ledger)


async def test_a_stale_answer_never_moves_a_leg_back(engine: AsyncEngine) -> None:
    # Alpaca reports `pending_cancel` of a partially filled order as an accepted order.
    leg_id, account_id, _ = await _one_submitting_leg(engine)
    async with engine.begin() as conn:
        await settle_legs(conn, [LegOutcome(leg_id, S.PARTIALLY_FILLED, filled_qty=Decimal(1))])
        moved = await settle_legs(conn, [LegOutcome(leg_id, S.ACCEPTED)])
    assert moved == []
    assert (await _status_and_ledger(engine, leg_id, account_id))[0] == "partially_filled"


async def test_a_leg_settled_twice_releases_its_ledger_once(engine: AsyncEngine) -> None:
    leg_id, account_id, qty = await _one_submitting_leg(engine)
    async with engine.begin() as conn:
        first = await settle_legs(conn, [LegOutcome(leg_id, S.CANCELED)])
        second = await settle_legs(conn, [LegOutcome(leg_id, S.CANCELED)])
    assert len(first) == 1 and second == []
    assert await _status_and_ledger(engine, leg_id, account_id) == ("canceled", -qty)


ANSWERS = st.lists(
    st.tuples(st.sampled_from(list(S)), st.integers(min_value=0, max_value=1)),
    min_size=1,
    max_size=6,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(answers=ANSWERS)
def test_random_broker_answers_follow_the_table(
    servers: dict[str, str], answers: list[tuple[LegStatus, int]]
) -> None:
    async def scenario() -> None:
        engine = make_engine(servers["database"], pool_size=1, max_overflow=1)
        try:
            leg_id, account_id, qty = await _one_submitting_leg(engine)
            expected = S.SUBMITTING
            for status, filled in answers:
                async with engine.begin() as conn:
                    moved = await settle_legs(
                        conn, [LegOutcome(leg_id, status, filled_qty=Decimal(filled))]
                    )
                allowed = can_transition(expected, status)
                assert bool(moved) == allowed, (expected, status)
                if allowed:
                    expected = status
                    filled_now = Decimal(filled)
            recorded, ledger = await _status_and_ledger(engine, leg_id, account_id)
            assert recorded == expected.value
            if expected in UNFILLED_END:
                # Released once, by the move into the unfilled end, never again.
                assert ledger == -(qty - filled_now)
            else:
                assert ledger == 0
        finally:
            await engine.dispose()

    asyncio.run(scenario())
