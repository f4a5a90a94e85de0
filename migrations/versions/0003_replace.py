"""Replace propagation: master order versions and the version each leg was brought to.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE master_orders ADD COLUMN version integer NOT NULL DEFAULT 1")
    op.execute("ALTER TABLE legs ADD COLUMN version integer NOT NULL DEFAULT 1")


def downgrade() -> None:
    op.execute("ALTER TABLE legs DROP COLUMN version")
    op.execute("ALTER TABLE master_orders DROP COLUMN version")
