"""Master orders the master placed directly at its broker (origin 'broker'), as the poller
follows them: which of them a broker listing names, and where each one is at the broker now
(the order that carries it after replaces, whether it is still open there, and how it ended
when it ended short of its quantity: what the copies are brought back to)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from services.infra.db.repositories.base import Connection, columns, fetch_all_as, text
from services.infra.db.repositories.orders import MasterOrder

_ORDER_COLUMNS = columns(MasterOrder)


async def followed_orders(
    conn: Connection, account_id: str, broker_order_ids: Sequence[str]
) -> list[MasterOrder]:
    """The account's broker-origin orders that are still open at the broker (and not being
    canceled by us already), plus any whose current broker order is one of these ids."""
    return fetch_all_as(
        await conn.execute(
            text(
                f"SELECT {_ORDER_COLUMNS} FROM master_orders "
                "WHERE account_id = :a AND origin = 'broker' AND ("
                "(broker_open AND cancel_requested_at IS NULL) "
                "OR broker_order_id = ANY(CAST(:ids AS text[])))"
            ),
            {"a": account_id, "ids": list(broker_order_ids)},
        ),
        MasterOrder,
    )


async def set_broker_state(
    conn: Connection,
    order_id: str,
    broker_order_id: str,
    broker_client_order_id: str | None,
    still_open: bool,
) -> None:
    """Where the order is at the broker now: the order carrying it and whether it is open."""
    await conn.execute(
        text(
            "UPDATE master_orders SET broker_order_id = :b, broker_open = :open, "
            "broker_client_order_id = COALESCE(:c, broker_client_order_id) WHERE id = :id"
        ),
        {"id": order_id, "b": broker_order_id, "c": broker_client_order_id, "open": still_open},
    )


async def set_broker_end(conn: Connection, order_id: str, status: str, filled_qty: Decimal) -> None:
    """The order ended at the broker without filling in full (canceled, expired, rejected):
    its copies are to be brought to what it filled (services.app.compensating)."""
    await conn.execute(
        text(
            "UPDATE master_orders SET broker_end_status = :s, broker_end_filled_qty = :f "
            "WHERE id = :id AND origin = 'broker'"
        ),
        {"id": order_id, "s": status, "f": filled_qty},
    )
