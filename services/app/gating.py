"""copy_on = accepted (issue 18): the master's own order goes first, alone; its followers'
copies are recorded once the master's broker accepted it, or skipped (master_rejected) when it
refused. The plan is stored with the master leg, so every later delivery sizes against the same
facts (the master's position from before its order) and finds the master leg where it left it."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncEngine

from replication.model import MasterContext
from schemas.messages import OrderMessage, PlanContext
from services.app.recording import Recorder
from services.app.sending import Sender
from services.app.settling import Settler
from services.app.snapshots import Snapshot
from services.infra.db.repositories.accounts import SealedAccount
from services.infra.db.repositories.compensation import master_leg_status

GO = frozenset({"accepted", "partially_filled", "filled"})
REFUSED = frozenset({"rejected", "failed", "canceled", "expired"})


class MasterFirst:
    def __init__(
        self,
        engine: AsyncEngine,
        recorder: Recorder,
        sender: Sender,
        settler: Settler,
        wait_s: float,
    ) -> None:
        self.engine = engine
        self.recorder = recorder
        self.sender = sender
        self.settler = settler
        self.wait_s = wait_s

    async def refused(
        self,
        order: OrderMessage,
        master_row: SealedAccount,
        context: PlanContext,
        fix_plan: str | None,
    ) -> bool:
        """Record and send the master leg (storing the plan with it), then wait for its broker's
        verdict: True when refused. Raises TimeoutError while it is still in doubt (the message
        is then redelivered; the sweeper resolves the leg meanwhile)."""
        mine = await self.recorder.record(
            order, [], Snapshot(context=MasterContext()), context, master_row, None, fix_plan
        )
        if mine:
            outcomes = await self.sender.send_all(mine, {order.account_id: master_row}, [])
            await self.settler.settle(outcomes, order.created_at)
        async with asyncio.timeout(self.wait_s):
            while True:
                async with self.engine.connect() as conn:
                    status = await master_leg_status(conn, order.order_id)
                if status in GO:
                    return False
                if status in REFUSED:
                    return True
                await asyncio.sleep(0.1)
