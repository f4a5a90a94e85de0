"""Kill switches that act: flatten requests (cancel resting copies, close copied positions) and
per-leg cancel requests.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE flatten_requests (
            id uuid PRIMARY KEY,
            scope text NOT NULL,
            requested_by uuid NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            claimed_until timestamptz,
            done_at timestamptz
        )
        """
    )
    op.execute(
        "CREATE INDEX flatten_requests_pending_idx ON flatten_requests (created_at) "
        "WHERE done_at IS NULL"
    )
    op.execute("ALTER TABLE legs ADD COLUMN cancel_requested_at timestamptz")
    op.execute(
        "CREATE INDEX legs_cancel_requested_idx ON legs (id) WHERE cancel_requested_at IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS legs_cancel_requested_idx")
    op.execute("ALTER TABLE legs DROP COLUMN cancel_requested_at")
    op.execute("DROP TABLE flatten_requests")
