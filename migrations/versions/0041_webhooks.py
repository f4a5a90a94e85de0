"""Webhooks per user, their deliveries (one per event and webhook) and every delivery attempt.

Revision ID: 0041
Revises: 0031
"""

from alembic import op

revision = "0041"
down_revision = "0031"
branch_labels = None
depends_on = None

STATEMENTS = [
    """
    CREATE TABLE webhooks (
        id uuid PRIMARY KEY,
        user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        url text NOT NULL,
        events text[] NOT NULL,
        secret bytea NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    "CREATE INDEX webhooks_user_idx ON webhooks (user_id)",
    """
    CREATE TABLE webhook_deliveries (
        id uuid PRIMARY KEY,
        webhook_id uuid NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
        event_id uuid NOT NULL,
        event text NOT NULL,
        payload jsonb NOT NULL,
        status text NOT NULL DEFAULT 'pending'
            CHECK (status IN ('pending', 'delivered', 'failed')),
        attempts integer NOT NULL DEFAULT 0,
        created_at timestamptz NOT NULL DEFAULT now(),
        finished_at timestamptz,
        UNIQUE (webhook_id, event_id)
    )
    """,
    "CREATE INDEX webhook_deliveries_webhook_idx ON webhook_deliveries (webhook_id, created_at)",
    """
    CREATE TABLE webhook_attempts (
        delivery_id uuid NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
        attempt integer NOT NULL,
        status_code integer,
        error text,
        duration_ms double precision NOT NULL,
        at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (delivery_id, attempt)
    )
    """,
    # History pages walk (created_at, id) newest first.
    "CREATE INDEX master_orders_master_created_idx ON master_orders (master_id, created_at DESC, id DESC)",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS master_orders_master_created_idx")
    for table in ("webhook_attempts", "webhook_deliveries", "webhooks"):
        op.execute(f"DROP TABLE IF EXISTS {table}")
