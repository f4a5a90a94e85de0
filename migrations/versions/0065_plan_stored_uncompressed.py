"""An order's plan is stored uncompressed (issue 13, fifth pass).

The plan (services/app/planning.py) lists every follower account of the order, ~40 bytes each:
80 KB at 2,000 followers, stored in the first batch's transaction, before the first follower's
order may leave. PostgreSQL compressed it with pglz on the way to TOAST: on this machine storing
80 KB took 2.8 ms compressed and 0.95 ms uncompressed (lz4 would be as fast but the embedded
PostgreSQL is built without it). STORAGE EXTERNAL keeps it out of line, uncompressed; it only
applies to plans written from now on.

Revision ID: 0065
Revises: 0064
"""

from alembic import op

revision = "0065"
down_revision = "0064"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE master_orders ALTER COLUMN plan SET STORAGE EXTERNAL")


def downgrade() -> None:
    op.execute("ALTER TABLE master_orders ALTER COLUMN plan SET STORAGE EXTENDED")
