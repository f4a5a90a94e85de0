"""A shard message is a request to work, never a source of truth.

Anyone able to publish on the shards subject could otherwise name any follower accounts, a
made-up order, or clear the halt flags. Before a shard is recorded, everything it carries is
read again from PostgreSQL: the master order row, the stored plan (its context and this
shard's accounts), the halts in force now (a halt set after planning also stops the shards
not yet recorded) and the master leg's verdict. A shard of an order that is not stored, not
planned, or whose index is not in the plan is dropped.
"""

from __future__ import annotations

import uuid

from schemas.messages import OrderPlan, ShardMessage
from services.app.gating import REFUSED
from services.app.order_messages import order_message_from_row
from services.infra.db.repositories.base import Connection
from services.infra.db.repositories.compensation import master_leg_status
from services.infra.db.repositories.halts import GLOBAL_HALT_SCOPE, master_halt_scope
from services.infra.db.repositories.orders import order_state, orders_by_ids


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


async def stored_shard(conn: Connection, shard: ShardMessage) -> ShardMessage | None:
    """The shard as PostgreSQL has it, or None when no planned order has such a shard. Only
    `master_refused` may come from the message, and only to skip copies, never to send them."""
    order_id = shard.order.order_id
    if not is_uuid(order_id):
        return None
    row = (await orders_by_ids(conn, [order_id])).get(order_id)
    state = await order_state(conn, order_id) if row is not None else None
    if row is None or state is None or state.plan is None:
        return None
    plan = OrderPlan.model_validate(state.plan)
    if not 0 < shard.shard < len(plan.shards):  # shard 0 is the coordinator's, never sent
        return None
    master_scope = master_halt_scope(str(row.master_id))
    context = plan.context.model_copy(
        update={
            "global_halt": plan.context.global_halt or GLOBAL_HALT_SCOPE in state.halts,
            "master_halted": plan.context.master_halted or master_scope in state.halts,
        }
    )
    refused = shard.master_refused or await master_leg_status(conn, order_id) in REFUSED
    return ShardMessage(
        order=order_message_from_row(row),
        shard=shard.shard,
        shards=len(plan.shards),
        context=context,
        account_ids=plan.shards[shard.shard],
        targets_version=plan.targets_version,
        master_refused=refused,
    )
