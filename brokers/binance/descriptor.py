"""Binance Spot's descriptor: HMAC key pair, weights per IP, orders per account, UTC days."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from brokers.binance import constants as c
from brokers.binance.client import BinanceBroker
from brokers.descriptor import (
    BrokerDescriptor,
    ClientOrderIdRules,
    Code,
    Connections,
    Credentials,
    Endpoints,
    HeaderValue,
    RateLimits,
    Symbol,
    Window,
)
from replication.ports import Broker

TESTNET_BASE_URL = "https://testnet.binance.vision"
MAX_WATCH_SYMBOLS = 50  # the poller lists each one every interval


def request_weight(operation: str) -> int:
    """The request weight one adapter operation spends against the IP's per-minute budget, for
    one watched symbol (the adapter itself says how much with its own watch list; budgets ask
    the adapter first: ratelimit.BudgetedBroker)."""
    return c.operation_weight(operation, 1)


class BinanceCredentials(Credentials):
    api_key: HeaderValue
    secret_key: HeaderValue
    testnet: bool = False
    quote_asset: Code = c.DEFAULT_QUOTE_ASSET
    watch_symbols: Annotated[list[Symbol], Field(max_length=MAX_WATCH_SYMBOLS)] = []


def _endpoints(credentials: BinanceCredentials) -> Endpoints:
    return Endpoints(trading=TESTNET_BASE_URL if credentials.testnet else c.BASE_URL)


def _connect(credentials: BinanceCredentials, connections: Connections) -> Broker:
    return BinanceBroker(
        connections.trading,
        credentials.api_key,
        credentials.secret_key,
        quote_asset=credentials.quote_asset,
        watch_symbols=tuple(credentials.watch_symbols),
    )


DESCRIPTOR = BrokerDescriptor(
    name="binance",
    credentials=BinanceCredentials,
    endpoints=_endpoints,
    connect=_connect,
    timezone="UTC",  # Binance's daily limits and candles roll over at 00:00 UTC
    client_order_id=ClientOrderIdRules(c.CLIENT_ORDER_ID_MAX_LENGTH, "A-Za-z0-9_-"),
    limits=RateLimits(
        per_account=Window(c.ORDERS_PER_10_SECONDS, 10),
        per_host=Window(c.REQUEST_WEIGHT_PER_MINUTE, 60),
        account_operations=frozenset({"place_order", "replace_order"}),
        weight=request_weight,
        probe_early=False,  # repeated requests after a 429 earn a 418 IP ban
    ),
)
