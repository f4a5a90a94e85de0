"""Nothing silently stuck, and the poller follows the master's own orders.

- master_orders.dead_lettered_at / dead_letter_reason: the order's message ran out of delivery
  attempts (JetStream max_deliver); shown by GET /v1/orders/{id} as status `dead_lettered`.
- master_orders.broker_order_id / broker_open: for orders the master placed directly at its
  broker (origin 'broker'), the broker's id of the order that currently carries it (it moves on
  each replace) and whether it is still open there: the poller follows open ones and propagates
  the master's cancels and replaces to the copies. Orders seen before this revision keep their
  id (from their client_order_id) and are not followed.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE master_orders ADD COLUMN dead_lettered_at timestamptz")
    op.execute("ALTER TABLE master_orders ADD COLUMN dead_letter_reason text")
    op.execute("ALTER TABLE master_orders ADD COLUMN broker_order_id text")
    op.execute("ALTER TABLE master_orders ADD COLUMN broker_open boolean NOT NULL DEFAULT false")
    op.execute(
        "UPDATE master_orders SET broker_order_id = substring(client_order_id from 8) "
        "WHERE origin = 'broker' AND client_order_id LIKE 'broker:%'"
    )
    op.execute(
        "CREATE INDEX master_orders_broker_order_idx ON master_orders (account_id, broker_order_id) "
        "WHERE origin = 'broker'"
    )
    op.execute(
        "CREATE INDEX master_orders_broker_open_idx ON master_orders (account_id) WHERE broker_open"
    )


def downgrade() -> None:
    op.execute("DROP INDEX master_orders_broker_open_idx")
    op.execute("DROP INDEX master_orders_broker_order_idx")
    for column in ("broker_open", "broker_order_id", "dead_letter_reason", "dead_lettered_at"):
        op.execute(f"ALTER TABLE master_orders DROP COLUMN {column}")
