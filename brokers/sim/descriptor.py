"""The simulator's descriptor. The simulator speaks Alpaca's Trading API, so its adapter is
Alpaca's; broker packages never import each other, so the registry hands that adapter in.
Its limits are off unless configured (tests and demos choose them)."""

from __future__ import annotations

from collections.abc import Callable

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
from brokers.http import HttpApi
from replication.ports import Broker

DEFAULT_BASE_URL = "http://127.0.0.1:8100"  # `python -m brokers.sim`; deployments override it
TIMEZONE = "America/New_York"  # it plays a US equities broker
CLIENT_ORDER_ID_MAX_LENGTH = 128

# (trading client, key id, secret key, market-data client) → adapter: Alpaca's constructor.
AlpacaProtocolAdapter = Callable[[HttpApi, str, str, HttpApi], Broker]


class SimCredentials(Credentials):
    key_id: HeaderValue
    secret_key: HeaderValue


def limits(account_per_minute: float = 0, host_per_second: float = 0) -> RateLimits:
    """The simulator's budgets as configured; 0 switches one off."""
    return RateLimits(
        per_account=Window(account_per_minute, 60) if account_per_minute > 0 else None,
        per_host=Window(host_per_second, 1) if host_per_second > 0 else None,
    )


def descriptor(alpaca_adapter: AlpacaProtocolAdapter) -> BrokerDescriptor[SimCredentials]:
    def connect(credentials: SimCredentials, connections: Connections) -> Broker:
        return alpaca_adapter(
            connections.trading, credentials.key_id, credentials.secret_key, connections.data
        )

    return BrokerDescriptor(
        name="sim",
        credentials=SimCredentials,
        endpoints=lambda credentials: Endpoints(trading=DEFAULT_BASE_URL),  # data on the same host
        connect=connect,
        timezone=TIMEZONE,
        client_order_id=ClientOrderIdRules(CLIENT_ORDER_ID_MAX_LENGTH, "!-~"),
        limits=limits(),
    )
