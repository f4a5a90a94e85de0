"""Deleting a linked account: the row stays (its orders and legs reference it) as a tombstone:
`deleted_at` set, halted, its credentials replaced by a sealed empty object, its subscriptions
removed. Every owner-facing query skips deleted accounts.

Revision ID: 0012
Revises: 0011
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE accounts ADD COLUMN deleted_at timestamptz")


def downgrade() -> None:
    op.execute("ALTER TABLE accounts DROP COLUMN deleted_at")
