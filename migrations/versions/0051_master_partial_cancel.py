"""Copies follow a master order canceled after partial fills (issue 18): the compensation that
closed copies of a refused master order now also brings copies to the fraction the master filled
when its own leg ends canceled short of its quantity.

No new column: the same claim (master_orders.compensation_claimed_at) and the same exactly-once
mark (master_orders.compensated_at) serve both. Orders whose master leg already ended canceled
short of its quantity before this release are marked compensated here, so upgrading never sends
closing orders for copies of old orders (the rule applies from this release on).

Revision ID: 0051
Revises: 0041
"""

from alembic import op

revision = "0051"
down_revision = "0041"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "UPDATE master_orders o SET compensated_at = now() WHERE o.compensated_at IS NULL "
        "AND EXISTS (SELECT 1 FROM legs l WHERE l.order_id = o.id AND l.action = 'master' "
        "AND l.status = 'canceled' AND COALESCE(l.filled_qty, 0) < l.qty)"
    )


def downgrade() -> None:
    pass  # the marks are true either way: those orders need nothing more
