"""Retries bounded by time, not attempts: leg statuses `retrying` (not placed, sent again after
its backoff) and `expired` (not placed before its copy deadline); master orders that exhausted
their deliveries are dead-lettered (`dead_lettered_at`) and retried by the sweeper.

`dead_lettered_at` is also added by branch issue-10b (the API's view of dead-lettered orders);
this migration adds it only when missing, so either order of merging works.

Revision ID: 0031
Revises: 0021
"""

from alembic import op

revision = "0031"
down_revision = "0021"
branch_labels = None
depends_on = None

_OLD = (
    "'planned', 'submitting', 'unknown', 'accepted', 'partially_filled', 'filled', 'rejected', "
    "'skipped', 'canceled', 'failed'"
)
_NEW = _OLD + ", 'retrying', 'expired'"


def upgrade() -> None:
    op.execute("ALTER TABLE legs DROP CONSTRAINT IF EXISTS legs_status_check")
    op.execute(f"ALTER TABLE legs ADD CONSTRAINT legs_status_check CHECK (status IN ({_NEW}))")
    op.execute("DROP INDEX IF EXISTS legs_in_doubt_idx")
    op.execute(
        "CREATE INDEX legs_in_doubt_idx ON legs (lease_expires_at) "
        "WHERE status IN ('submitting', 'unknown', 'retrying')"
    )
    op.execute("DROP INDEX IF EXISTS legs_master_open_idx")
    op.execute(
        "CREATE INDEX legs_master_open_idx ON legs (account_id) WHERE action = 'master' "
        "AND status IN ('planned', 'submitting', 'unknown', 'retrying', 'accepted', "
        "'partially_filled')"
    )
    op.execute("ALTER TABLE master_orders ADD COLUMN IF NOT EXISTS dead_lettered_at timestamptz")
    op.execute(
        "CREATE INDEX IF NOT EXISTS master_orders_dead_lettered_idx ON master_orders "
        "(dead_lettered_at) WHERE dead_lettered_at IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS master_orders_dead_lettered_idx")
    op.execute("ALTER TABLE master_orders DROP COLUMN IF EXISTS dead_lettered_at")
    op.execute("UPDATE legs SET status = 'failed' WHERE status IN ('retrying', 'expired')")
    op.execute("ALTER TABLE legs DROP CONSTRAINT IF EXISTS legs_status_check")
    op.execute(f"ALTER TABLE legs ADD CONSTRAINT legs_status_check CHECK (status IN ({_OLD}))")
