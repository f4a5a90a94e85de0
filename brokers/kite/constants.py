"""Zerodha Kite Connect v3: endpoints, limits, status and error tables."""

from __future__ import annotations

from replication.state import LegStatus

BASE_URL = "https://api.kite.trade"
API_VERSION = "3"
TAG_MAX_LENGTH = 20
ORDERS_PER_SECOND = 10
REQUESTS_PER_SECOND = 10
DEFAULT_EXCHANGE = "NSE"
DEFAULT_PRODUCT = "CNC"
BROKER_TIMEZONE = "Asia/Kolkata"

# "OPEN" with a filled quantity is a partial fill (handled in translate).
STATUS_MAP: dict[str, LegStatus] = {
    "OPEN": LegStatus.ACCEPTED,
    "COMPLETE": LegStatus.FILLED,
    "CANCELLED": LegStatus.CANCELED,
    "REJECTED": LegStatus.REJECTED,
    "TRIGGER PENDING": LegStatus.ACCEPTED,
    "OPEN PENDING": LegStatus.ACCEPTED,
    "VALIDATION PENDING": LegStatus.ACCEPTED,
    "PUT ORDER REQ RECEIVED": LegStatus.ACCEPTED,
    "MODIFY VALIDATION PENDING": LegStatus.ACCEPTED,
    "MODIFY PENDING": LegStatus.ACCEPTED,
    "CANCEL PENDING": LegStatus.ACCEPTED,
    "AMO REQ RECEIVED": LegStatus.ACCEPTED,
    "MODIFIED": LegStatus.ACCEPTED,
}

ORDER_TYPES = {"market": "MARKET", "limit": "LIMIT", "stop": "SL-M", "stop_limit": "SL"}
# Kite refuses MARKET and SL-M orders placed through the API without `market_protection`
# ("Market orders without market protection are not allowed via API"); -1 asks Kite to apply
# its own protection band, as kiteconnect's documentation does.
MARKET_PROTECTED_ORDER_TYPES = frozenset({"MARKET", "SL-M"})
MARKET_PROTECTION_AUTO = "-1"
# Our time in force → Kite's `validity` (DAY, IOC, TTL). Kite has no good-till-cancelled
# validity (GTT is a separate trigger API), so a GTC order is refused with this reason rather
# than sent as DAY, where it would expire at the close without anyone being told.
VALIDITY = {"day": "DAY", "ioc": "IOC"}
UNSUPPORTED_TIME_IN_FORCE = {
    "gtc": "Kite has no good-till-cancelled validity (only DAY, IOC and TTL); "
    "a GTC order is not copied as DAY",
}

# error_type → what it means for an order
FATAL_ERRORS = frozenset({"TokenException", "PermissionException", "UserException"})
REJECTED_ERRORS = frozenset({"InputException", "OrderException", "MarginException"})
UNKNOWN_ERRORS = frozenset({"NetworkException", "GeneralException", "DataException"})
