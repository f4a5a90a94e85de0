"""Broker adapters for follower accounts, one per account, over shared per-host HTTP pools."""

from __future__ import annotations

from typing import Any

from brokers.alpaca.client import AlpacaBroker
from brokers.alpaca.constants import DATA_BASE_URL, LIVE_BASE_URL, PAPER_BASE_URL
from brokers.http import HttpClientPool
from replication.errors import Fatal
from replication.ports import Broker

SUPPORTED_BROKERS = frozenset({"sim", "alpaca"})


def validate_credentials(broker: str, credentials: dict[str, Any]) -> str | None:
    """Why these credentials cannot work for this broker, or None."""
    if broker not in SUPPORTED_BROKERS:
        return f"broker {broker!r} is not supported yet"
    for field in ("key_id", "secret_key"):
        value = credentials.get(field)
        if not isinstance(value, str) or not value or len(value) > 256:
            return f"credentials.{field} is required (a string of at most 256 characters)"
    allowed = {"key_id", "secret_key"} | ({"paper"} if broker == "alpaca" else set())
    extra = set(credentials) - allowed
    if extra:
        return f"unknown credential fields: {sorted(extra)}"
    if "paper" in credentials and not isinstance(credentials["paper"], bool):
        return "credentials.paper must be a boolean"
    return None


class BrokerFactory:
    def __init__(self, pool: HttpClientPool, sim_url: str) -> None:
        self._pool = pool
        self._sim_url = sim_url
        self._cache: dict[str, Broker] = {}

    def base_url(self, broker: str, credentials: dict[str, Any]) -> str:
        if broker == "sim":
            return self._sim_url
        if broker == "alpaca":
            return PAPER_BASE_URL if credentials.get("paper", True) else LIVE_BASE_URL
        raise Fatal(f"broker {broker!r} is not supported", code="unsupported_broker")

    def for_account(self, account_id: str, broker: str, credentials: dict[str, Any]) -> Broker:
        cached = self._cache.get(account_id)
        if cached is not None:
            return cached
        http = self._pool.client(self.base_url(broker, credentials))
        data_http = http if broker == "sim" else self._pool.client(DATA_BASE_URL)
        adapter = AlpacaBroker(http, credentials["key_id"], credentials["secret_key"], data_http)
        self._cache[account_id] = adapter
        return adapter

    def forget(self, account_id: str) -> None:
        self._cache.pop(account_id, None)
