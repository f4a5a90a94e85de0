"""Copies are owned by the subscription that made them: the copy ledger per (subscription,
symbol), account totals derived from it; subscriptions that end while following exits.

The ledger is rebuilt from the legs themselves (a follower leg reserves its signed quantity
when recorded and gives back what did not fill when it ends rejected, failed or canceled), so
every subscription starts with exactly the copies it made.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE copy_positions (
            subscription_id uuid NOT NULL,
            account_id uuid NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            symbol text NOT NULL,
            qty numeric NOT NULL DEFAULT 0,
            PRIMARY KEY (subscription_id, symbol)
        )
        """
    )
    op.execute("CREATE INDEX copy_positions_account_idx ON copy_positions (account_id, symbol)")
    op.execute(
        """
        INSERT INTO copy_positions (subscription_id, account_id, symbol, qty)
        SELECT subscription_id, account_id, symbol,
               sum(CASE WHEN side = 'buy' THEN 1 ELSE -1 END
                   * CASE WHEN status IN ('rejected', 'failed', 'canceled')
                          THEN filled_qty ELSE qty END)
        FROM legs
        WHERE action <> 'master' AND subscription_id IS NOT NULL AND qty IS NOT NULL
          AND status <> 'skipped'
        GROUP BY subscription_id, account_id, symbol
        """
    )
    op.execute("DROP TABLE risk_positions")
    # `ending_at`: the follower ended the subscription but its copies follow the master's exits
    # until flat (DELETE …?positions=follow_exits); nothing new is opened meanwhile.
    op.execute("ALTER TABLE subscriptions ADD COLUMN ending_at timestamptz")


def downgrade() -> None:
    op.execute("ALTER TABLE subscriptions DROP COLUMN ending_at")
    op.execute(
        """
        CREATE TABLE risk_positions (
            account_id uuid NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            symbol text NOT NULL,
            qty numeric NOT NULL DEFAULT 0,
            PRIMARY KEY (account_id, symbol)
        )
        """
    )
    op.execute(
        "INSERT INTO risk_positions (account_id, symbol, qty) "
        "SELECT account_id, symbol, sum(qty) FROM copy_positions GROUP BY account_id, symbol"
    )
    op.execute("DROP TABLE copy_positions")
