"""Rows for benchmarks and tests that seed the database directly (scripts/statement_cost.py,
scripts/plan_store_cost.py, tests/integration/test_query_plans.py): one shape, kept here."""

from __future__ import annotations

from decimal import Decimal
from typing import Any


def market_order_row(
    order_id: str, master_id: str, account_id: str, client_order_id: str | None = None
) -> dict[str, Any]:
    """`insert_master_order`'s values for a market buy of 1 AAPL (client id: the order id)."""
    return {
        "id": order_id,
        "master_id": master_id,
        "account_id": account_id,
        "client_order_id": client_order_id or order_id,
        "request_hash": "h",
        "symbol": "AAPL",
        "side": "buy",
        "qty": Decimal(1),
        "type": "market",
        "limit_price": None,
        "stop_price": None,
        "time_in_force": "day",
    }
