"""Master order rows → the JetStream order message (API, sweeper outbox, replace pass)."""

from __future__ import annotations

from schemas.messages import OrderMessage
from services.infra.db.repositories.orders import MasterOrder


def order_message_from_row(row: MasterOrder) -> OrderMessage:
    return OrderMessage(
        order_id=str(row.id),
        master_id=str(row.master_id),
        account_id=str(row.account_id),
        client_order_id=row.client_order_id,
        symbol=row.symbol,
        side=row.side,
        qty=row.qty,
        type=row.type,
        limit_price=row.limit_price,
        stop_price=row.stop_price,
        time_in_force=row.time_in_force,
        created_at=row.created_at,
        origin=row.origin or "api",
        broker_client_order_id=row.broker_client_order_id,
    )
