"""Alpaca Trading API v2: endpoints, limits and the status table."""

from __future__ import annotations

from replication.state import LegStatus

PAPER_BASE_URL = "https://paper-api.alpaca.markets"
LIVE_BASE_URL = "https://api.alpaca.markets"
DATA_BASE_URL = "https://data.alpaca.markets"
# Fractional equity orders: quantities to 9 decimals, at least $1 (Alpaca's documented rules).
FRACTIONAL_QTY_STEP = "0.000000001"
FRACTIONAL_MIN_NOTIONAL = "1"
REQUESTS_PER_MINUTE = 200
# US equities: the trading day (daily caps, day P&L) follows New York's calendar.
BROKER_TIMEZONE = "America/New_York"
CLIENT_ORDER_ID_MAX_LENGTH = 128
DUPLICATE_CLIENT_ORDER_ID_MESSAGE = "client_order_id must be unique"

# Alpaca order status → leg status. One explicit table; an unlisted status is an error.
STATUS_MAP: dict[str, LegStatus] = {
    "new": LegStatus.ACCEPTED,
    "accepted": LegStatus.ACCEPTED,
    "pending_new": LegStatus.ACCEPTED,
    "accepted_for_bidding": LegStatus.ACCEPTED,
    "held": LegStatus.ACCEPTED,
    "calculated": LegStatus.ACCEPTED,
    "stopped": LegStatus.ACCEPTED,
    "pending_cancel": LegStatus.ACCEPTED,
    "pending_replace": LegStatus.ACCEPTED,
    "partially_filled": LegStatus.PARTIALLY_FILLED,
    "filled": LegStatus.FILLED,
    "done_for_day": LegStatus.CANCELED,
    "canceled": LegStatus.CANCELED,
    "expired": LegStatus.CANCELED,
    "replaced": LegStatus.CANCELED,
    "rejected": LegStatus.REJECTED,
    "suspended": LegStatus.REJECTED,
}
