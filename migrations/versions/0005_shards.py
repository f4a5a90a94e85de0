"""Shards shared by all workers: each order's plan (master context and shard partition) is fixed
the first time it is planned, and the shards recorded so far are counted on the order.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE master_orders ADD COLUMN plan jsonb")
    op.execute(
        "ALTER TABLE master_orders ADD COLUMN shards_recorded integer[] NOT NULL DEFAULT '{}'"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE master_orders DROP COLUMN shards_recorded")
    op.execute("ALTER TABLE master_orders DROP COLUMN plan")
