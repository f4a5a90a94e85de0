"""Initial schema: users, accounts, subscriptions, master orders, legs.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

STATEMENTS = [
    """
    CREATE TABLE users (
        id uuid PRIMARY KEY,
        email text NOT NULL UNIQUE CHECK (email = lower(email)),
        password_hash text NOT NULL,
        role text NOT NULL CHECK (role IN ('master', 'follower', 'admin')),
        created_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE accounts (
        id uuid PRIMARY KEY,
        user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        broker text NOT NULL CHECK (broker IN ('sim', 'alpaca', 'binance', 'kite')),
        label text NOT NULL,
        credentials bytea NOT NULL,
        halted boolean NOT NULL DEFAULT false,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    "CREATE INDEX accounts_user_idx ON accounts (user_id)",
    """
    CREATE TABLE subscriptions (
        id uuid PRIMARY KEY,
        follower_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        master_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        account_id uuid NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        sizing jsonb NOT NULL,
        caps jsonb NOT NULL DEFAULT '{}',
        filters jsonb NOT NULL DEFAULT '{}',
        paused boolean NOT NULL DEFAULT false,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        UNIQUE (master_id, account_id)
    )
    """,
    "CREATE INDEX subscriptions_master_idx ON subscriptions (master_id)",
    "CREATE INDEX subscriptions_follower_idx ON subscriptions (follower_id)",
    """
    CREATE TABLE master_orders (
        id uuid PRIMARY KEY,
        master_id uuid NOT NULL REFERENCES users(id),
        account_id uuid NOT NULL REFERENCES accounts(id),
        client_order_id text NOT NULL,
        request_hash text NOT NULL,
        symbol text NOT NULL,
        side text NOT NULL CHECK (side IN ('buy', 'sell')),
        qty numeric NOT NULL CHECK (qty > 0),
        type text NOT NULL,
        limit_price numeric,
        stop_price numeric,
        time_in_force text NOT NULL,
        status text NOT NULL DEFAULT 'accepted',
        created_at timestamptz NOT NULL DEFAULT now(),
        published_at timestamptz,
        planned_at timestamptz,
        UNIQUE (master_id, client_order_id)
    )
    """,
    "CREATE INDEX master_orders_unpublished_idx ON master_orders (created_at) "
    "WHERE published_at IS NULL",
    """
    CREATE TABLE legs (
        id uuid PRIMARY KEY,
        order_id uuid NOT NULL REFERENCES master_orders(id),
        master_id uuid NOT NULL,
        subscription_id uuid NOT NULL,
        follower_id uuid NOT NULL,
        account_id uuid NOT NULL REFERENCES accounts(id),
        action text NOT NULL,
        client_order_id text NOT NULL,
        symbol text NOT NULL,
        side text NOT NULL CHECK (side IN ('buy', 'sell')),
        qty numeric CHECK (qty IS NULL OR qty > 0),
        type text NOT NULL,
        time_in_force text NOT NULL,
        limit_price numeric,
        stop_price numeric,
        status text NOT NULL CHECK (status IN ('planned', 'submitting', 'unknown', 'accepted',
            'partially_filled', 'filled', 'rejected', 'skipped', 'canceled', 'failed')),
        reason text,
        details jsonb NOT NULL DEFAULT '{}',
        broker_order_id text,
        filled_qty numeric NOT NULL DEFAULT 0,
        filled_avg_price numeric,
        attempts integer NOT NULL DEFAULT 0,
        lease_expires_at timestamptz,
        last_sent_at timestamptz,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        settled_at timestamptz,
        -- invariant 1: exactly one leg per (master order, follower account, action)
        UNIQUE (order_id, account_id, action),
        UNIQUE (account_id, client_order_id),
        CHECK (status = 'skipped' OR qty IS NOT NULL)
    )
    """,
    "CREATE INDEX legs_in_doubt_idx ON legs (lease_expires_at) "
    "WHERE status IN ('submitting', 'unknown')",
    "CREATE INDEX legs_follower_idx ON legs (follower_id, created_at DESC)",
    "CREATE INDEX legs_order_idx ON legs (order_id)",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    for table in ("legs", "master_orders", "subscriptions", "accounts", "users"):
        op.execute(f"DROP TABLE IF EXISTS {table}")
