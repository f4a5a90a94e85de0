"""Alpaca's descriptor: key-pair credentials, paper or live host, 200 requests a minute."""

from __future__ import annotations

from brokers.alpaca import constants as c
from brokers.alpaca.client import AlpacaBroker
from brokers.descriptor import (
    BrokerDescriptor,
    ClientOrderIdRules,
    Connections,
    Credentials,
    Endpoints,
    HeaderValue,
    RateLimits,
    Window,
)
from replication.ports import Broker


class AlpacaCredentials(Credentials):
    key_id: HeaderValue
    secret_key: HeaderValue
    paper: bool = True


def _endpoints(credentials: AlpacaCredentials) -> Endpoints:
    trading = c.PAPER_BASE_URL if credentials.paper else c.LIVE_BASE_URL
    return Endpoints(trading=trading, data=c.DATA_BASE_URL)


def _connect(credentials: AlpacaCredentials, connections: Connections) -> Broker:
    return AlpacaBroker(
        connections.trading, credentials.key_id, credentials.secret_key, connections.data
    )


DESCRIPTOR = BrokerDescriptor(
    name="alpaca",
    credentials=AlpacaCredentials,
    endpoints=_endpoints,
    connect=_connect,
    timezone=c.BROKER_TIMEZONE,
    client_order_id=ClientOrderIdRules(c.CLIENT_ORDER_ID_MAX_LENGTH, "!-~"),
    limits=RateLimits(per_account=Window(c.REQUESTS_PER_MINUTE, 60)),
)
