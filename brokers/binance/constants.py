"""Binance Spot REST: endpoints, limits, and the status and error tables."""

from __future__ import annotations

from replication.state import LegStatus

BASE_URL = "https://api.binance.com"
RECV_WINDOW_MS = 5000
CLIENT_ORDER_ID_MAX_LENGTH = 36
DEFAULT_QUOTE_ASSET = "USDT"

# Documented limits (GET /api/v3/exchangeInfo rateLimits): request weight per IP and minute,
# orders per account per 10 s and per day.
REQUEST_WEIGHT_PER_MINUTE = 6000
ORDERS_PER_10_SECONDS = 100
ORDERS_PER_DAY = 200_000

# Request weight (IP) of each request we send, by (method, path, whether a symbol is sent):
# Binance weighs some endpoints by their arguments (ticker/price: 2 for one symbol, 4 for all).
# exchangeInfo weighs 10 in the spec of 2024-10 and 20 in Binance's current docs; we count 20.
REQUEST_WEIGHTS: dict[tuple[str, str, bool], int] = {
    ("POST", "/api/v3/order", True): 1,
    ("GET", "/api/v3/order", True): 4,
    ("DELETE", "/api/v3/order", True): 1,
    ("POST", "/api/v3/order/cancelReplace", True): 1,
    ("GET", "/api/v3/allOrders", True): 20,
    ("GET", "/api/v3/account", False): 20,
    ("GET", "/api/v3/exchangeInfo", True): 20,
    ("GET", "/api/v3/ticker/price", True): 2,
    ("GET", "/api/v3/ticker/price", False): 4,
}

# The requests each adapter operation sends (list_orders: once per watched symbol).
OPERATION_REQUESTS: dict[str, tuple[tuple[str, str, bool], ...]] = {
    "place_order": (("POST", "/api/v3/order", True),),
    "get_order_by_client_id": (("GET", "/api/v3/order", True),),
    "cancel_order": (("DELETE", "/api/v3/order", True),),
    "replace_order": (
        ("GET", "/api/v3/order", True),
        ("POST", "/api/v3/order/cancelReplace", True),
    ),
    "list_orders": (("GET", "/api/v3/allOrders", True),),
    "positions": (("GET", "/api/v3/account", False),),
    "account": (("GET", "/api/v3/account", False), ("GET", "/api/v3/ticker/price", False)),
    "instrument": (("GET", "/api/v3/exchangeInfo", True),),
    "last_price": (("GET", "/api/v3/ticker/price", True),),
}
OPERATIONS_PER_WATCHED_SYMBOL = frozenset({"list_orders"})


def operation_weight(operation: str, watched_symbols: int) -> int:
    """The request weight one adapter operation spends (1 for an operation not listed)."""
    requests = OPERATION_REQUESTS.get(operation)
    if requests is None:
        return 1
    weight = sum(REQUEST_WEIGHTS[request] for request in requests)
    return weight * watched_symbols if operation in OPERATIONS_PER_WATCHED_SYMBOL else weight


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

ORDER_TYPES = {
    "market": "MARKET",
    "limit": "LIMIT",
    "stop": "STOP_LOSS",
    "stop_limit": "STOP_LOSS_LIMIT",
}
# Our time in force → Binance's `timeInForce` (GTC, IOC, FOK), sent with LIMIT and
# STOP_LOSS_LIMIT orders. Each mapping that changes the meaning carries its reason (README).
TIME_IN_FORCE = {"day": "GTC", "gtc": "GTC", "ioc": "IOC"}
TIME_IN_FORCE_MAPPING_REASONS = {
    "day": "spot markets trade around the clock and have no trading day: a day order rests GTC",
}
# MARKET orders execute at once, so every time in force means the same for them. A STOP_LOSS
# order takes no timeInForce and rests until triggered, so an IOC stop is refused.
UNSUPPORTED_TIME_IN_FORCE = {
    ("stop", "ioc"): "Binance STOP_LOSS orders take no time in force: an IOC stop would rest",
}

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
