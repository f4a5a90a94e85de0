"""Shards shared by all workers: each order's plan (master context and shard partition) is fixed
the first time it is planned, and the shards recorded so far are counted on the order. An index
for "has this master a master leg that is not final" (the master-position cache's guard).

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
    # "Does this master have a master leg that is not final?" on every order, kept tiny.
    op.execute(
        "CREATE INDEX legs_master_open_idx ON legs (account_id) WHERE action = 'master' "
        "AND status IN ('planned', 'submitting', 'unknown', 'accepted', 'partially_filled')"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS legs_master_open_idx")
    op.execute("ALTER TABLE master_orders DROP COLUMN shards_recorded")
    op.execute("ALTER TABLE master_orders DROP COLUMN plan")
