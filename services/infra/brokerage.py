"""Broker adapters for accounts, one per account, over shared per-host HTTP pools."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any

import httpx

from brokers.descriptor import Connections, InvalidCredentials
from brokers.http import HttpClientPool
from brokers.registry import DESCRIPTORS, UnsupportedBroker, descriptor
from replication.errors import BrokerError, Fatal, NotFound, Rejected
from replication.ports import Broker
from services.infra.ratelimit import Budgets


class CredentialsRejected(ValueError):
    """Credentials that cannot work for a broker; `code` says why (the API answers 422)."""

    code = "invalid_credentials"


class BrokerNotSupported(CredentialsRejected):
    code = "broker_not_supported"


class BrokerUnreachable(RuntimeError):
    """The broker did not answer a credentials check (down, timing out, unreachable): nothing
    is known about the credentials, so nothing is stored (the API answers 503)."""


def validate_credentials(broker: str, credentials: dict[str, Any]) -> None:
    """Raise CredentialsRejected saying why these credentials cannot work for this broker."""
    if broker not in DESCRIPTORS:
        raise BrokerNotSupported(f"broker {broker!r} is not supported")
    try:
        DESCRIPTORS[broker].parse_credentials(credentials)
    except InvalidCredentials as exc:
        raise CredentialsRejected(str(exc)) from None


def broker_day(broker: str | None, now: datetime) -> date:
    """The trading day at `now` of an account at `broker` (its calendar day in the broker's
    time zone); UTC's day when there is no broker account."""
    return now.date() if broker is None else descriptor(broker).trading_day(now)


class BrokerFactory:
    def __init__(
        self,
        pool: HttpClientPool,
        base_urls: Mapping[str, str] | None = None,
        budgets: Budgets | None = None,
    ) -> None:
        self._budgets = budgets
        self._pool = pool
        # Trading base URLs by broker name, over the descriptors' defaults (the simulator's
        # configured address, tests, proxies).
        self._base_urls = dict(base_urls or {})
        self._cache: dict[str, Broker] = {}
        self._sealed: dict[str, tuple[bytes, Broker]] = {}

    def for_account(self, account_id: str, broker: str, credentials: dict[str, Any]) -> Broker:
        cached = self._cache.get(account_id)
        if cached is not None:
            return cached
        try:
            described = descriptor(broker)
            parsed = described.parse_credentials(credentials)
        except UnsupportedBroker:
            raise Fatal(f"broker {broker!r} is not supported", code="unsupported_broker") from None
        except InvalidCredentials as exc:
            raise Fatal(str(exc), code="invalid_credentials") from None
        endpoints = described.endpoints(parsed)
        base_url = self._base_urls.get(broker, endpoints.trading)
        http = self._pool.client(base_url)
        data = http if endpoints.data is None else self._pool.client(endpoints.data)
        adapter = described.connect(parsed, Connections(trading=http, data=data))
        if self._budgets is not None:
            adapter = self._budgets.wrap(adapter, broker, account_id, base_url)
        self._cache[account_id] = adapter
        return adapter

    def for_sealed(
        self,
        account_id: str,
        broker: str,
        sealed: bytes,
        unseal: Callable[[str, bytes], dict[str, Any]],
    ) -> Broker:
        """The adapter for stored (encrypted) credentials: decrypted once per ciphertext, so the
        hot path does no AES per leg, and changed credentials build a fresh adapter."""
        sealed = bytes(sealed)
        known = self._sealed.get(account_id)
        if known is not None and known[0] == sealed:
            return known[1]
        self._cache.pop(account_id, None)
        adapter = self.for_account(account_id, broker, unseal(account_id, sealed))
        self._sealed[account_id] = (sealed, adapter)
        return adapter

    async def verify(self, broker: str, credentials: dict[str, Any]) -> None:
        """One read-only call (the account) with these credentials, through an adapter that is
        neither cached nor budgeted; CredentialsRejected when the broker refuses them."""
        described = descriptor(broker)
        parsed = described.parse_credentials(credentials)
        endpoints = described.endpoints(parsed)
        http = self._pool.client(self._base_urls.get(broker, endpoints.trading))
        data = http if endpoints.data is None else self._pool.client(endpoints.data)
        adapter = described.connect(parsed, Connections(trading=http, data=data))
        try:
            await adapter.account()
        except (Fatal, Rejected, NotFound) as exc:
            raise CredentialsRejected("the broker refused these credentials") from exc
        except (BrokerError, httpx.HTTPError, OSError, TimeoutError) as exc:
            raise BrokerUnreachable(f"the broker did not answer ({type(exc).__name__})") from exc

    def cached(self, account_id: str) -> Broker | None:
        return self._cache.get(account_id)
