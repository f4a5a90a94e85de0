"""Refresh tokens (issue 15, sessions): rotating, revocable, stored as SHA-256 digests.

A sign-in opens a family; each refresh spends the presented token (`used_at`) and issues the
next one in the same family. A spent token presented again revokes the whole family (theft
detection), and so does a logout.

Revision ID: 0062
Revises: 0051
"""

from alembic import op

revision = "0062"
down_revision = "0061"
branch_labels = None
depends_on = None

STATEMENTS = [
    """
    CREATE TABLE refresh_families (
        id uuid PRIMARY KEY,
        user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        created_at timestamptz NOT NULL DEFAULT now(),
        revoked_at timestamptz,
        revoked_reason text CHECK (revoked_reason IN ('logout', 'reused'))
    )
    """,
    "CREATE INDEX refresh_families_user_idx ON refresh_families (user_id)",
    """
    CREATE TABLE refresh_tokens (
        token_hash bytea PRIMARY KEY,
        family_id uuid NOT NULL REFERENCES refresh_families(id) ON DELETE CASCADE,
        issued_at timestamptz NOT NULL DEFAULT now(),
        expires_at timestamptz NOT NULL,
        used_at timestamptz
    )
    """,
    "CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id)",
    # The sweeper's purge of long-expired tokens and families.
    "CREATE INDEX refresh_tokens_expires_idx ON refresh_tokens (expires_at)",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS refresh_tokens")
    op.execute("DROP TABLE IF EXISTS refresh_families")
