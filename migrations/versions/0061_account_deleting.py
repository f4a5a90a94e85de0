"""An account being deleted with its positions closed (issue 11: `DELETE /v1/accounts/{id}
?positions=close`): `deleting_at` marks it while its copies are flattened; the sweeper retires
it (deleted_at, tombstone credentials) once the flatten is done and no leg is open.

Revision ID: 0061
Revises: 0051
"""

from alembic import op

revision = "0061"
down_revision = "0051"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE accounts ADD COLUMN deleting_at timestamptz")
    op.execute(
        "CREATE INDEX accounts_deleting ON accounts (deleting_at) "
        "WHERE deleting_at IS NOT NULL AND deleted_at IS NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS accounts_deleting")
    op.execute("ALTER TABLE accounts DROP COLUMN deleting_at")
