"""Planning a master order, once: the master's side (position, reference price, equity, halts,
instrument rules) and the partition of its follower accounts into shards. The plan is stored on
the order with its first batch (first stored wins), so every delivery and every worker sizes
against the same facts."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas.messages import OrderMessage, OrderPlan
from services.app.snapshots import Snapshots
from services.app.targets import TargetSet, broker_for
from services.infra.brokerage import BrokerFactory, broker_day
from services.infra.crypto import CredentialCipher
from services.infra.db.repositories.accounts import SealedAccount
from services.infra.db.repositories.orders import OrderState
from services.infra.settings import Settings


class Planner:
    def __init__(
        self,
        settings: Settings,
        factory: BrokerFactory,
        cipher: CredentialCipher,
        snapshots: Snapshots,
    ) -> None:
        self.shard_size = settings.shard_size
        self.factory = factory
        self.cipher = cipher
        self.snapshots = snapshots

    async def propose(
        self,
        order: OrderMessage,
        state: OrderState,
        followers: TargetSet,
        master_row: SealedAccount | None,
    ) -> OrderPlan:
        """The plan this worker would store: the master context and the shards."""
        by_broker = {
            name: broker_for(self.factory, self.cipher, row)
            for name, row in followers.one_per_broker.items()
        }
        master_broker = (
            None if master_row is None else broker_for(self.factory, self.cipher, master_row)
        )
        now = datetime.now(UTC)
        context = await self.snapshots.master(
            order,
            master_broker,
            (followers.needs_master_equity, followers.needs_price),
            by_broker,
            state.halts,
            now,
            broker_day(master_row.broker if master_row else None, now),
            position_cache_ok=not state.master_busy,
            master_broker_name=master_row.broker if master_row else "",
            copies=bool(followers.targets),
            broker_order_id=state.order.broker_order_id,
        )
        return OrderPlan(
            context=context,
            shards=followers.shards(self.shard_size) or [[]],
            targets_version=followers.version,
        )
