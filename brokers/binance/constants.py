"""Binance Spot REST: endpoints, limits, and the status and error tables."""

from __future__ import annotations

from replication.state import LegStatus

BASE_URL = "https://api.binance.com"
RECV_WINDOW_MS = 5000
CLIENT_ORDER_ID_MAX_LENGTH = 36
DEFAULT_QUOTE_ASSET = "USDT"

# Documented limits (GET /api/v3/exchangeInfo rateLimits): request weight per IP and minute,
# orders per account per 10 s and per day. Weights of the endpoints we call.
REQUEST_WEIGHT_PER_MINUTE = 6000
ORDERS_PER_10_SECONDS = 100
ORDERS_PER_DAY = 200_000
WEIGHTS = {
    "POST /api/v3/order": 1,
    "GET /api/v3/order": 4,
    "DELETE /api/v3/order": 1,
    "POST /api/v3/order/cancelReplace": 1,
    "GET /api/v3/allOrders": 20,
    "GET /api/v3/account": 20,
    "GET /api/v3/exchangeInfo": 20,
    "GET /api/v3/ticker/price": 2,
}

STATUS_MAP: dict[str, LegStatus] = {
    "NEW": LegStatus.ACCEPTED,
    "PENDING_NEW": LegStatus.ACCEPTED,
    "PARTIALLY_FILLED": LegStatus.PARTIALLY_FILLED,
    "FILLED": LegStatus.FILLED,
    "PENDING_CANCEL": LegStatus.ACCEPTED,
    "CANCELED": LegStatus.CANCELED,
    "EXPIRED": LegStatus.CANCELED,
    "EXPIRED_IN_MATCH": LegStatus.CANCELED,
    "REJECTED": LegStatus.REJECTED,
}

# Our order types → Binance's; time in force: Binance has no DAY, so day orders rest GTC.
ORDER_TYPES = {
    "market": "MARKET",
    "limit": "LIMIT",
    "stop": "STOP_LOSS",
    "stop_limit": "STOP_LOSS_LIMIT",
}
TIME_IN_FORCE = {"day": "GTC", "gtc": "GTC", "ioc": "IOC"}

# Error codes (Binance "Error codes for Binance" document).
UNKNOWN_EXECUTION = -1007  # timeout waiting for the backend: the order may or may not exist
TOO_MANY_REQUESTS = -1003
TIMESTAMP_OUTSIDE_WINDOW = -1021
BAD_SIGNATURE = -1022
NEW_ORDER_REJECTED = -2010
CANCEL_REJECTED = -2011
NO_SUCH_ORDER = -2013
BAD_API_KEY_FORMAT = -2014
REJECTED_API_KEY = -2015
DUPLICATE_ORDER_MESSAGE = "Duplicate order sent."
