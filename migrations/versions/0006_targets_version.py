"""A per-master version of everything a fan-out reads about its followers.

Replicators keep each master's subscription rows in memory and reuse them while this version is
unchanged. The database bumps it in the same transaction as the change (triggers), so a cached
copy can never outlive a pause, a halt, a resize or an unsubscribe, whoever made the change.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE users ADD COLUMN targets_version bigint NOT NULL DEFAULT 0")
    op.execute(
        """
        CREATE FUNCTION copytrade_subscription_changed() RETURNS trigger AS $$
        BEGIN
            IF TG_OP IN ('UPDATE', 'DELETE') THEN
                UPDATE users SET targets_version = targets_version + 1 WHERE id = OLD.master_id;
            END IF;
            IF TG_OP IN ('INSERT', 'UPDATE') THEN
                UPDATE users SET targets_version = targets_version + 1 WHERE id = NEW.master_id;
            END IF;
            RETURN NULL;
        END $$ LANGUAGE plpgsql
        """
    )
    op.execute(
        """
        CREATE FUNCTION copytrade_account_changed() RETURNS trigger AS $$
        BEGIN
            UPDATE users SET targets_version = targets_version + 1
            WHERE id IN (SELECT master_id FROM subscriptions WHERE account_id = NEW.id);
            RETURN NULL;
        END $$ LANGUAGE plpgsql
        """
    )
    op.execute(
        "CREATE TRIGGER subscriptions_targets_version AFTER INSERT OR UPDATE OR DELETE "
        "ON subscriptions FOR EACH ROW EXECUTE FUNCTION copytrade_subscription_changed()"
    )
    # Deleting an account deletes its subscriptions (cascade), which fires the trigger above.
    op.execute(
        "CREATE TRIGGER accounts_targets_version AFTER UPDATE ON accounts "
        "FOR EACH ROW EXECUTE FUNCTION copytrade_account_changed()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS accounts_targets_version ON accounts")
    op.execute("DROP TRIGGER IF EXISTS subscriptions_targets_version ON subscriptions")
    op.execute("DROP FUNCTION IF EXISTS copytrade_account_changed()")
    op.execute("DROP FUNCTION IF EXISTS copytrade_subscription_changed()")
    op.execute("ALTER TABLE users DROP COLUMN targets_version")
