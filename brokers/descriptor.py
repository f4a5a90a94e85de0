"""What the services know about a broker, in one frozen value per broker package.

Each package `brokers/<name>/descriptor.py` defines one `BrokerDescriptor`: its credentials
model, default base URLs, documented rate limits and request weights, the time zone of its
trading day, its client-order-id rules and the constructor of its adapter. `brokers.registry`
lists them; services, API validation and the demo iterate the registry instead of branching on
broker names, so adding a broker is adding a package and one registry line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Annotated, Any, Generic, TypeVar
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from brokers.http import HttpApi
from replication.plan import trading_day
from replication.ports import Broker

# A credential goes into an HTTP header: visible ASCII only (no space, CR, LF or any control
# character, so nothing can split or fold a header), and bounded.
HeaderValue = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[!-~]+$")]
# Exchange, product and asset codes: short upper-case tokens.
Code = Annotated[str, StringConstraints(min_length=2, max_length=10, pattern=r"^[A-Z0-9]+$")]
Symbol = Annotated[str, StringConstraints(min_length=1, max_length=20, pattern=r"^[A-Za-z0-9]+$")]


class Credentials(BaseModel):
    """Base of every credentials model: strict types (no "yes" → True), unknown fields refused."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


C = TypeVar("C", bound=Credentials)


class InvalidCredentials(ValueError):
    """Credentials a broker cannot use; the message names fields, never values."""


@dataclass(frozen=True)
class Window:
    """A documented request limit: at most `requests` in any `seconds`-long window."""

    requests: float
    seconds: float


def _one_each(operation: str) -> int:
    return 1


@dataclass(frozen=True)
class RateLimits:
    """A broker's documented budgets. `per_account` counts requests of one broker account (only
    `account_operations` when given, e.g. Binance counts orders); `per_host` counts the weight
    (`weight(operation)`, one by default) of every request sent to one egress host."""

    per_account: Window | None = None
    per_host: Window | None = None
    account_operations: frozenset[str] | None = None
    weight: Callable[[str], int] = _one_each
    # After a 429, may one request per account probe before the broker's Retry-After is up
    # (services/infra/cooldown.py)? Not where a 429 is a host-wide warning that early
    # requests turn into a ban (Binance's 418).
    probe_early: bool = True

    def counts_for_account(self, operation: str) -> bool:
        return self.account_operations is None or operation in self.account_operations


@dataclass(frozen=True)
class ClientOrderIdRules:
    """What the broker accepts as a client order id (Kite: its order `tag`)."""

    max_length: int
    alphabet: str  # a regular-expression character class body, e.g. "A-Za-z0-9"

    def accepts(self, client_order_id: str) -> bool:
        pattern = f"[{self.alphabet}]{{1,{self.max_length}}}"
        return re.fullmatch(pattern, client_order_id) is not None


@dataclass(frozen=True)
class Endpoints:
    """Base URLs of one account: trading, and market data when the broker serves it elsewhere."""

    trading: str
    data: str | None = None


@dataclass(frozen=True)
class Connections:
    """Pooled HTTP clients an adapter is built on (`data` is `trading` when the broker has no
    separate market-data host)."""

    trading: HttpApi
    data: HttpApi


@dataclass(frozen=True)
class BrokerDescriptor(Generic[C]):
    name: str
    credentials: type[C]
    endpoints: Callable[[C], Endpoints]
    connect: Callable[[C, Connections], Broker]
    timezone: str  # IANA name of the zone whose calendar day is the broker's trading day
    client_order_id: ClientOrderIdRules
    limits: RateLimits = field(default_factory=RateLimits)

    def __post_init__(self) -> None:
        ZoneInfo(self.timezone)  # an unknown zone fails at import, not on the first order

    def parse_credentials(self, raw: Mapping[str, Any]) -> C:
        """The typed credentials, or InvalidCredentials naming the first bad field."""
        try:
            return self.credentials.model_validate(dict(raw))
        except ValidationError as exc:
            first = exc.errors(include_input=False, include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"])
            raise InvalidCredentials(f"credentials.{where}: {first['msg']}") from None

    def trading_day(self, now: datetime) -> date:
        """The broker's calendar day at `now`: daily counters and the loss window reset at its
        midnight."""
        return trading_day(now, self.timezone)
