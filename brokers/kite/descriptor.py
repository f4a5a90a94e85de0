"""Zerodha Kite's descriptor: API key and daily access token, 10 requests a second, IST days."""

from __future__ import annotations

from brokers.descriptor import (
    BrokerDescriptor,
    ClientOrderIdRules,
    Code,
    Connections,
    Credentials,
    Endpoints,
    HeaderValue,
    RateLimits,
    Window,
)
from brokers.kite import constants as c
from brokers.kite.client import KiteBroker
from replication.ports import Broker


class KiteCredentials(Credentials):
    api_key: HeaderValue
    access_token: HeaderValue
    exchange: Code = c.DEFAULT_EXCHANGE
    product: Code = c.DEFAULT_PRODUCT


def _endpoints(credentials: KiteCredentials) -> Endpoints:
    return Endpoints(trading=c.BASE_URL)


def _connect(credentials: KiteCredentials, connections: Connections) -> Broker:
    return KiteBroker(
        connections.trading,
        credentials.api_key,
        credentials.access_token,
        exchange=credentials.exchange,
        product=credentials.product,
    )


DESCRIPTOR = BrokerDescriptor(
    name="kite",
    credentials=KiteCredentials,
    endpoints=_endpoints,
    connect=_connect,
    timezone=c.BROKER_TIMEZONE,
    client_order_id=ClientOrderIdRules(c.TAG_MAX_LENGTH, "A-Za-z0-9"),  # the order `tag`
    limits=RateLimits(per_account=Window(c.REQUESTS_PER_SECOND, 1)),
)
