"""Consent to be copied: a master's copy access (invite by default), invite codes, and the
`ending_at` a master's removal of a follower sets.

`copy_access`: invite (a follower needs a code), open (anyone may follow), closed (no one new).
Invite codes are stored as SHA-256 digests: the code itself is answered once, to the master.
`subscriptions.ending_at` is also added by the branch that implements follow_exits; IF NOT
EXISTS keeps either order of the two migrations working.

Revision ID: 0011
Revises: 0009
"""

from alembic import op

revision = "0011"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE users ADD COLUMN copy_access text NOT NULL DEFAULT 'invite' "
        "CHECK (copy_access IN ('invite', 'open', 'closed'))"
    )
    op.execute("ALTER TABLE users ADD COLUMN display_name text")
    op.execute(
        """
        CREATE TABLE master_invites (
            code_digest text PRIMARY KEY,
            master_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            max_uses integer,
            uses integer NOT NULL DEFAULT 0,
            expires_at timestamptz NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX master_invites_master ON master_invites (master_id)")
    op.execute("ALTER TABLE subscriptions ADD COLUMN IF NOT EXISTS ending_at timestamptz")


def downgrade() -> None:
    op.execute("DROP TABLE master_invites")
    op.execute("ALTER TABLE users DROP COLUMN display_name")
    op.execute("ALTER TABLE users DROP COLUMN copy_access")
