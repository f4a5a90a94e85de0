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
VALIDITY = {"day": "DAY", "gtc": "DAY", "ioc": "IOC"}

# error_type → what it means for an order
FATAL_ERRORS = frozenset({"TokenException", "PermissionException", "UserException"})
REJECTED_ERRORS = frozenset({"InputException", "OrderException", "MarginException"})
UNKNOWN_ERRORS = frozenset({"NetworkException", "GeneralException", "DataException"})
