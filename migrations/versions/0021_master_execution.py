"""Master execution policy (issue 18): when copies go out, and what a refused master order undoes.

- users.copy_on: `submitted` (copies leave alongside the master's own order; default, today's
  behaviour) or `accepted` (copies leave once the master's broker accepted it).
- subscriptions.on_master_rejected: `close` (default: a copy filled before the master's broker
  refused the master's order is closed) or `keep`.
- master_orders.compensation_claimed_at / compensated_at: the one compensation of an order whose
  master leg was refused (claimed with a lease, done exactly once).

Revision ID: 0021
Revises: 0012
"""

from alembic import op

revision = "0021"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE users ADD COLUMN copy_on text NOT NULL DEFAULT 'submitted' "
        "CHECK (copy_on IN ('submitted', 'accepted'))"
    )
    op.execute(
        "ALTER TABLE subscriptions ADD COLUMN on_master_rejected text NOT NULL DEFAULT 'close' "
        "CHECK (on_master_rejected IN ('close', 'keep'))"
    )
    op.execute("ALTER TABLE master_orders ADD COLUMN compensation_claimed_at timestamptz")
    op.execute("ALTER TABLE master_orders ADD COLUMN compensated_at timestamptz")


def downgrade() -> None:
    op.execute("ALTER TABLE master_orders DROP COLUMN compensated_at")
    op.execute("ALTER TABLE master_orders DROP COLUMN compensation_claimed_at")
    op.execute("ALTER TABLE subscriptions DROP COLUMN on_master_rejected")
    op.execute("ALTER TABLE users DROP COLUMN copy_on")
