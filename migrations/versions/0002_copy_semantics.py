"""Copy semantics: risk ledger, daily counters, halts, cancel requests, the master's own leg.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

STATEMENTS = [
    # The master's own order is a leg too (action 'master'): it has no subscription.
    "ALTER TABLE legs ALTER COLUMN subscription_id DROP NOT NULL",
    "ALTER TABLE master_orders ADD COLUMN cancel_requested_at timestamptz",
    # Per follower account: the broker-local trading day and the orders recorded in it.
    # Rows are locked (SELECT … FOR UPDATE) while a worker plans and records legs, so caps hold
    # across orders and worker processes.
    """
    CREATE TABLE risk_accounts (
        account_id uuid PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
        trading_day date NOT NULL,
        orders_today integer NOT NULL DEFAULT 0 CHECK (orders_today >= 0)
    )
    """,
    # The copy position ledger: signed quantity our legs put on, reserved when a leg is
    # recorded and released when it ends unfilled.
    """
    CREATE TABLE risk_positions (
        account_id uuid NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        symbol text NOT NULL,
        qty numeric NOT NULL DEFAULT 0,
        PRIMARY KEY (account_id, symbol)
    )
    """,
    """
    CREATE TABLE halts (
        scope text PRIMARY KEY,
        halted_by uuid NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    "CREATE INDEX legs_open_idx ON legs (order_id) WHERE status IN ('accepted', 'partially_filled')",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS legs_open_idx")
    for table in ("halts", "risk_positions", "risk_accounts"):
        op.execute(f"DROP TABLE IF EXISTS {table}")
    op.execute("ALTER TABLE master_orders DROP COLUMN IF EXISTS cancel_requested_at")
    op.execute("DELETE FROM legs WHERE action = 'master'")
    op.execute("ALTER TABLE legs ALTER COLUMN subscription_id SET NOT NULL")
