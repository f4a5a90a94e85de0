"""Recording a batch of legs: lock the followers' risk rows, plan, one bulk insert, spend the
caps, all in one transaction. A leg is durable before anything is sent; the risk rows stay
locked until the legs are recorded, so caps hold across workers and concurrent orders."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy.ext.asyncio import AsyncEngine

from replication.model import (
    ZERO,
    FollowerState,
    FollowerTarget,
    Instrument,
    PlannedLeg,
    evolve,
)
from replication.plan import master_leg, plan
from replication.state import LegStatus, transition
from schemas.messages import OrderMessage, PlanContext
from services.app.snapshots import Snapshot
from services.infra.brokerage import broker_day
from services.infra.db.fast import fast_begin
from services.infra.db.repositories.accounts import SealedAccount
from services.infra.db.repositories.legs import insert_legs
from services.infra.db.repositories.plans import shard_recorded, store_plan
from services.infra.db.repositories.risk import RiskRow, lock_risk, spend_risk


class PlanLost(Exception):
    """Another delivery of the order stored a different plan first."""


class Recorder:
    def __init__(self, engine: AsyncEngine, lease_s: float) -> None:
        self.engine = engine
        self.lease_s = lease_s

    async def record(
        self,
        order: OrderMessage,
        batch: list[FollowerTarget],
        snapshot: Snapshot,
        context: PlanContext,
        master_row: SealedAccount | None,
        completes: tuple[int, int] | None,
        fix_plan: str | None = None,
        master_refused: bool = False,
    ) -> list[PlannedLeg]:
        """Plan and record one batch in one transaction; returns the legs this call inserted.
        `completes` = (shard, shards) on a shard's last batch: the shard is then recorded."""
        # Each account counts its day in its own broker's calendar, at the plan's fixed time.
        days = {t.account_id: broker_day(t.broker, context.planned_at) for t in batch}
        async with fast_begin(self.engine) as conn:
            if fix_plan is not None:
                # A shard recorded in this one batch is counted in the same statement.
                ours, _ = await store_plan(conn, order.order_id, fix_plan, completes)
                if not ours:
                    raise PlanLost(order.order_id)  # rolls this batch back
            # Risk rows stay locked until the legs are recorded: caps hold across workers.
            risk = await lock_risk(
                conn,
                [t.account_id for t in batch],
                days,
                order.symbol,
                [t.account_id for t in batch if t.caps.max_open_positions is not None],
            )
            targets = [
                evolve(
                    target,
                    instrument=snapshot.instruments.get(target.broker, Instrument(order.symbol)),
                    state=merge_state(
                        snapshot.states.get(target.account_id, FollowerState()),
                        risk.get(target.account_id),
                        target.subscription_id,
                        order.symbol,
                    ),
                )
                for target in batch
            ]
            legs = plan(order, targets, context.planned_at, snapshot.context)
            if master_refused:  # copy_on = accepted and the master's broker said no
                legs = [master_rejected(leg) for leg in legs]
            if master_row is not None and order.origin == "api":
                # An order the master placed directly at its broker is already there.
                legs.append(own_leg(order, master_row.broker, context))
            to_record = [
                evolve(leg, status=transition(leg.status, LegStatus.SUBMITTING))
                if leg.status is LegStatus.PLANNED
                else leg
                for leg in legs
            ]
            inserted = set(await insert_legs(conn, order.master_id, to_record, self.lease_s))
            mine = [leg for leg in to_record if leg.leg_id in inserted]
            await spend_risk(conn, mine, days)
            if completes is not None and fix_plan is None:
                await shard_recorded(conn, order.order_id, *completes)
        return mine


def master_rejected(leg: PlannedLeg) -> PlannedLeg:
    """A copy not sent because the master's broker refused the master's own order."""
    if leg.status is not LegStatus.PLANNED:
        return leg
    details = {**leg.details, "planned_qty": str(leg.qty)}
    return replace(
        leg, status=LegStatus.SKIPPED, reason="master_rejected", qty=None, details=details
    )


def own_leg(order: OrderMessage, broker: str, context: PlanContext) -> PlannedLeg:
    """The master's own order; held past the copy window without the master's position, the
    followers are skipped, so the master's own order is not executed either (copy-or-hold)."""
    own = master_leg(order, broker)
    if context.master_position_unavailable:
        own = replace(own, status=LegStatus.SKIPPED, reason="master_position_unavailable")
    return own


def merge_state(
    snapshot: FollowerState, risk: RiskRow | None, subscription_id: str, symbol: str
) -> FollowerState:
    """Broker snapshot + the locked ledger of one subscription and the day counter of its
    account: the subscription's own copies, and what the account's other subscriptions hold."""
    if risk is None:
        return snapshot
    own = risk.copies.get(subscription_id, {})
    ledger_symbols = frozenset(s for s, qty in own.items() if qty != 0)
    return evolve(
        snapshot,
        copy_position=own.get(symbol, ZERO),
        other_copies=risk.others(subscription_id, symbol),
        open_symbols=snapshot.open_symbols | ledger_symbols,
        orders_today=risk.orders_today,
    )
