"""Broker adapters for accounts, one per account, over shared per-host HTTP pools."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from brokers.alpaca.client import AlpacaBroker
from brokers.alpaca.constants import DATA_BASE_URL, LIVE_BASE_URL, PAPER_BASE_URL
from brokers.binance import constants as binance
from brokers.binance.client import BinanceBroker
from brokers.http import HttpClientPool
from brokers.kite import constants as kite
from brokers.kite.client import KiteBroker
from replication.errors import Fatal
from replication.ports import Broker
from services.infra.ratelimit import Budgets

SUPPORTED_BROKERS = frozenset({"sim", "alpaca", "binance", "kite"})
BINANCE_TESTNET_URL = "https://testnet.binance.vision"

# Per broker: required string fields, optional fields and their types.
_CREDENTIALS: dict[str, tuple[tuple[str, ...], dict[str, type]]] = {
    "sim": (("key_id", "secret_key"), {}),
    "alpaca": (("key_id", "secret_key"), {"paper": bool}),
    "binance": (
        ("api_key", "secret_key"),
        {"testnet": bool, "quote_asset": str, "watch_symbols": list},
    ),
    "kite": (("api_key", "access_token"), {"exchange": str, "product": str}),
}


class CredentialsRejected(ValueError):
    """Credentials that cannot work for a broker; `code` says why (the API answers 422)."""

    code = "invalid_credentials"


class BrokerNotSupported(CredentialsRejected):
    code = "broker_not_supported"


def validate_credentials(broker: str, credentials: dict[str, Any]) -> None:
    """Raise CredentialsRejected saying why these credentials cannot work for this broker."""
    if broker not in _CREDENTIALS:
        raise BrokerNotSupported(f"broker {broker!r} is not supported")
    required, optional = _CREDENTIALS[broker]
    for field in required:
        value = credentials.get(field)
        if not isinstance(value, str) or not value or len(value) > 256:
            raise CredentialsRejected(
                f"credentials.{field} is required (a string of at most 256 characters)"
            )
    extra = set(credentials) - set(required) - set(optional)
    if extra:
        raise CredentialsRejected(f"unknown credential fields: {sorted(extra)}")
    for field, kind in optional.items():
        if field in credentials and not isinstance(credentials[field], kind):
            raise CredentialsRejected(f"credentials.{field} must be a {kind.__name__}")
    symbols = credentials.get("watch_symbols", [])
    if not all(isinstance(s, str) and s.isalnum() for s in symbols):
        raise CredentialsRejected("credentials.watch_symbols must be a list of symbols")


class BrokerFactory:
    def __init__(
        self,
        pool: HttpClientPool,
        sim_url: str,
        base_urls: dict[str, str] | None = None,
        budgets: Budgets | None = None,
    ) -> None:
        self._budgets = budgets
        self._pool = pool
        self._sim_url = sim_url
        self._base_urls = base_urls or {}  # overrides (tests, proxies)
        self._cache: dict[str, Broker] = {}
        self._sealed: dict[str, tuple[bytes, Broker]] = {}

    def base_url(self, broker: str, credentials: dict[str, Any]) -> str:
        if broker in self._base_urls:
            return self._base_urls[broker]
        if broker == "sim":
            return self._sim_url
        if broker == "alpaca":
            return PAPER_BASE_URL if credentials.get("paper", True) else LIVE_BASE_URL
        if broker == "binance":
            return BINANCE_TESTNET_URL if credentials.get("testnet") else binance.BASE_URL
        if broker == "kite":
            return kite.BASE_URL
        raise Fatal(f"broker {broker!r} is not supported", code="unsupported_broker")

    def for_account(self, account_id: str, broker: str, credentials: dict[str, Any]) -> Broker:
        cached = self._cache.get(account_id)
        if cached is not None:
            return cached
        base_url = self.base_url(broker, credentials)
        http = self._pool.client(base_url)
        adapter: Broker
        if broker == "binance":
            adapter = BinanceBroker(
                http,
                credentials["api_key"],
                credentials["secret_key"],
                quote_asset=credentials.get("quote_asset", binance.DEFAULT_QUOTE_ASSET),
                watch_symbols=tuple(credentials.get("watch_symbols", ())),
            )
        elif broker == "kite":
            adapter = KiteBroker(
                http,
                credentials["api_key"],
                credentials["access_token"],
                exchange=credentials.get("exchange", kite.DEFAULT_EXCHANGE),
                product=credentials.get("product", kite.DEFAULT_PRODUCT),
            )
        else:
            data_http = http if broker == "sim" else self._pool.client(DATA_BASE_URL)
            adapter = AlpacaBroker(
                http, credentials["key_id"], credentials["secret_key"], data_http
            )
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

    def cached(self, account_id: str) -> Broker | None:
        return self._cache.get(account_id)
