"""Copies follow the master's execution for orders placed directly at its broker too (issue 18).

- master_orders.broker_end_status / broker_end_filled_qty: how an order the master placed
  directly at its broker (origin 'broker', which has no master leg) ended there, recorded by the
  poller when it followed the order to its end (a leg status: canceled — Alpaca's canceled,
  expired, done_for_day — or rejected; and what it filled). The compensation reads them where it
  reads the master leg of an order placed through the API, so those copies are brought to the
  fraction the master filled exactly as for API orders (one claim, master_orders.compensated_at).
- A master leg that ended `expired` (never placed before its deadline) now calls for the same
  compensation; orders whose master leg ended so before this release are marked done, so an
  upgrade sends nothing for old orders.

Revision ID: 0064
Revises: 0051
"""

from alembic import op

revision = "0064"
down_revision = "0062"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE master_orders ADD COLUMN broker_end_status text")
    op.execute("ALTER TABLE master_orders ADD COLUMN broker_end_filled_qty numeric")
    # The sweeper's pass over broker-origin orders still to compensate.
    op.execute(
        "CREATE INDEX master_orders_broker_end_idx ON master_orders (id) "
        "WHERE broker_end_status IS NOT NULL AND compensated_at IS NULL"
    )
    op.execute(
        "UPDATE master_orders o SET compensated_at = now() WHERE o.compensated_at IS NULL "
        "AND EXISTS (SELECT 1 FROM legs l WHERE l.order_id = o.id AND l.action = 'master' "
        "AND l.status = 'expired')"
    )


def downgrade() -> None:
    op.execute("DROP INDEX master_orders_broker_end_idx")
    op.execute("ALTER TABLE master_orders DROP COLUMN broker_end_filled_qty")
    op.execute("ALTER TABLE master_orders DROP COLUMN broker_end_status")
