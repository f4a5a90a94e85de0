"""Broker poller: per-account cursors and the origin of master orders.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE master_orders ADD COLUMN origin text NOT NULL DEFAULT 'api'")
    op.execute("ALTER TABLE master_orders ADD COLUMN broker_client_order_id text")
    op.execute(
        """
        CREATE TABLE poller_cursors (
            account_id uuid PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
            cursor_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE poller_cursors")
    op.execute("ALTER TABLE master_orders DROP COLUMN broker_client_order_id")
    op.execute("ALTER TABLE master_orders DROP COLUMN origin")
