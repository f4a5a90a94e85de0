"""Settling legs: the one path from a broker's answer to a leg's status, its ledger and the
events people watch. The replicator (answers to what it sent), the sweeper (lookups, cancels,
refreshes) and replace propagation all settle through `Settler`.

A status only moves along the transition table (`settle_legs` guards every row with it);
what moved is then announced: leg metrics, the master's cached position dropped when a master
leg moved, leg events for followers' dashboards, and the order's progress for the master's.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime

from nats.aio.client import Client as NATS
from sqlalchemy.ext.asyncio import AsyncEngine

from replication.state import UNFILLED_END
from schemas.messages import SWEEP_NOW_SUBJECT
from services.app.events import publish_leg_events, publish_order_event
from services.app.notifications import legs_announced
from services.infra.db.fast import FastConnection, fast_begin, fast_connect
from services.infra.db.repositories.legs import LegOutcome, SettledLeg, settle_legs
from services.infra.db.repositories.orders import OrderProgress, orders_progress
from services.infra.metrics import LEGS, labelled
from services.infra.positions import MasterPositions

MASTER_ACTION = "master"


def settling_connection(
    engine: AsyncEngine, outcomes: Sequence[LegOutcome]
) -> AbstractAsyncContextManager[FastConnection]:
    """Where `settle_legs` records these outcomes: a transaction when one of them can end a
    leg unfilled (the move and its ledger release commit together), else autocommit: the
    settle is then one statement, and BEGIN and COMMIT would be two more round trips."""
    if any(o.status in UNFILLED_END for o in outcomes):
        return fast_begin(engine)
    return fast_connect(engine)


class Settler:
    def __init__(self, engine: AsyncEngine, nc: NATS, master_positions: MasterPositions) -> None:
        self.engine = engine
        self.nc = nc
        self.master_positions = master_positions

    async def settle(
        self, outcomes: Sequence[LegOutcome], order_created_at: datetime | None = None
    ) -> list[SettledLeg]:
        """Record the outcomes (each only along an allowed move), then announce what moved."""
        async with settling_connection(self.engine, outcomes) as conn:
            rows = await settle_legs(conn, outcomes)
        await self.announce(rows, order_created_at)
        return rows

    async def announce(
        self,
        rows: Sequence[SettledLeg],
        order_created_at: datetime | None = None,
        order: tuple[str, str] | None = None,
    ) -> dict[str, OrderProgress]:
        """Publish what changed for these leg rows; returns each touched order's progress
        (and that of `order`, an (order id, master id) to report even when no leg moved).

        The progress is read after the change committed: of the workers settling an order's
        shards, the last to read sees every shard settled, so the complete picture gets out."""
        for row in rows:
            labelled(LEGS, row.status).inc()
        for account_id in {str(r.account_id) for r in rows if r.action == MASTER_ACTION}:
            # A master leg moved: its account's cached position may be stale now.
            await self.master_positions.invalidate(account_id)
        await publish_leg_events(
            self.nc, [r for r in rows if r.action != MASTER_ACTION], order_created_at
        )
        await legs_announced(self.nc.jetstream(), rows)  # webhooks (services/app/notifications)
        masters = {str(row.order_id): str(row.master_id) for row in rows}
        if order is not None:
            masters.setdefault(*order)
        progress: dict[str, OrderProgress] = {}
        if masters:
            async with fast_connect(self.engine) as conn:
                progress = await orders_progress(conn, list(masters))
        for order_id, progress_now in progress.items():
            await publish_order_event(self.nc, order_id, masters[order_id], progress_now)
            if progress_now.cancel_requested:
                await self.nc.publish(SWEEP_NOW_SUBJECT, b"cancel")
        return progress
