"""Rate budgets shared by every worker (Redis token buckets) and a circuit breaker per host.

A budget reserves tokens atomically in Redis (one Lua script, Redis's own clock) and tells the
caller how long to wait until its reservation is covered; callers queue fairly across workers
without polling. A reservation that would wait longer than `max_wait_s` is refused instead:
the leg stays in doubt and the sweeper retries later, so a fan-out never turns into a 429 storm
(or a Binance IP ban). Budgets are keyed per broker account and per broker host, so one
broker's limits never slow followers on another.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TypeVar

import redis.asyncio as aioredis

from brokers.descriptor import RateLimits, Window
from brokers.registry import descriptor
from replication.errors import Fatal, NotFound, Rejected, Retryable, Unknown
from replication.model import AccountSnapshot, BrokerOrder, Instrument, OrderRequest, Position
from replication.ports import Broker
from replication.retry import PROBE_CAP_S
from services.infra.cooldown import AccountGate
from services.infra.metrics import BUDGET_REFUSED, BUDGET_WAIT, CIRCUIT_OPEN
from services.infra.scripts import for_client

T = TypeVar("T")

BUCKET_SCRIPT = """
local capacity = tonumber(ARGV[1])
local per_ms = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local max_wait = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or capacity
local ts = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + (now - ts) * per_ms)
local after = tokens - cost
local wait = 0
if after < 0 then wait = math.ceil(-after / per_ms) end
if wait > max_wait then
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
  return -wait
end
redis.call('HSET', KEYS[1], 'tokens', tostring(after), 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / per_ms) + 60000)
return wait
"""


@dataclass(frozen=True)
class Limit:
    capacity: float  # burst
    per_second: float  # refill

    @classmethod
    def of(cls, window: Window) -> Limit:
        return cls.window(window.requests, window.seconds)

    @classmethod
    def window(cls, requests: float, seconds: float) -> Limit:
        """A token bucket that stays under `requests` in any `seconds`-long window: a burst of
        5% plus a refill of 85% per window, so 90% of the broker's limit in the worst window;
        the rest absorbs scheduling jitter between reserving and the request's arrival."""
        return cls(capacity=max(1.0, requests * 0.05), per_second=requests * 0.85 / seconds)


class RateBudget:
    def __init__(self, redis: aioredis.Redis, key: str, limit: Limit, max_wait_s: float) -> None:
        self._redis = redis
        self._key = key
        self._limit = limit
        self._max_wait_ms = int(max_wait_s * 1000)
        self._script = for_client(redis).register(BUCKET_SCRIPT)  # batched per loop iteration
        # "copytrade:budget:account:<id>" → "account": the metric's label, never the id itself.
        parts = key.split(":")
        self._scope = parts[2] if len(parts) > 3 else "other"

    async def reserve(self, cost: float = 1.0) -> float:
        """Reserve `cost` tokens; returns seconds to wait (raises Retryable when too long)."""
        wait_ms = int(
            await self._script(
                keys=[self._key],
                args=[self._limit.capacity, self._limit.per_second / 1000, cost, self._max_wait_ms],
            )
        )
        if wait_ms < 0:
            BUDGET_REFUSED.labels(self._scope).inc()
            raise Retryable(
                f"rate budget {self._key} exhausted",
                retry_after=-wait_ms / 1000,
                code="rate_budget",
            )
        return wait_ms / 1000

    async def acquire(self, cost: float = 1.0) -> None:
        wait = await self.reserve(cost)
        BUDGET_WAIT.labels(self._scope).observe(wait)
        if wait > 0:
            await asyncio.sleep(wait)


class CircuitBreaker:
    """Opens after `threshold` consecutive failures that suggest the host is down; while open,
    calls fail fast (not sent, safe to retry); after `reset_s` one trial call is let through.

    Any well-formed answer closes it (an order, a 404, a rejection, a 429): the host is up.
    A trial that ends with neither answer nor failure (cancelled, a bug) must not keep the
    breaker half-open for ever, so a trial older than `reset_s` lets the next caller try."""

    def __init__(
        self,
        threshold: int = 20,
        reset_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        host: str = "",
    ) -> None:
        self.host = host
        self.threshold = threshold
        self.reset_s = reset_s
        self._clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self._trial_at: float | None = None

    def before(self) -> None:
        if self.opened_at is None:
            return
        now = self._clock()
        remaining = self.opened_at + self.reset_s - now
        trial_running = self._trial_at is not None and now - self._trial_at < self.reset_s
        if remaining > 0 or trial_running:
            raise Retryable("circuit open", retry_after=max(remaining, 0.5), code="circuit_open")
        self._trial_at = now  # half-open: this one call decides

    def success(self) -> None:
        """A well-formed answer from the host (whatever it said)."""
        if self.opened_at is not None:
            CIRCUIT_OPEN.labels(self.host).set(0)
        self.failures, self.opened_at, self._trial_at = 0, None, None

    def failure(self) -> None:
        self.failures += 1
        self._trial_at = None
        if self.failures >= self.threshold or self.opened_at is not None:
            self.opened_at = self._clock()
            CIRCUIT_OPEN.labels(self.host).set(1)


class BudgetedBroker:
    """A Broker that spends the account's and the host's budgets and honours the host's circuit
    breaker before every call. Implements replication.ports.Broker."""

    def __init__(
        self,
        inner: Broker,
        limits: RateLimits,
        account: RateBudget | None,
        host: RateBudget | None,
        breaker: CircuitBreaker,
        gate: AccountGate | None = None,
    ) -> None:
        self._inner = inner
        self._limits = limits
        self._account = account
        self._host = host
        self._breaker = breaker
        self._gate = gate

    def _weight(self, operation: str) -> int:
        """The host weight of one call: the adapter knows best where the weight depends on its
        own settings (Binance's list_orders costs once per watched symbol), else the
        descriptor's table."""
        weigh = getattr(self._inner, "request_weight", None)
        return int(weigh(operation)) if weigh is not None else self._limits.weight(operation)

    async def _call(
        self, operation: str, call: Callable[[], Awaitable[T]], for_account: bool = True
    ) -> T:
        """`for_account=False`: market data (instrument rules, prices) any account could ask
        for; it spends the host's budget, never one follower's, whose account budget is for
        its own orders (a 429 storm on one follower no longer stalls everyone's look-ups).
        Account calls pass the account's 429 gate first (services/infra/cooldown.py)."""
        self._breaker.before()
        gate = self._gate if for_account else None
        probe = False
        if gate is not None:
            wait, probe = await gate.admit()
            if wait > 0:  # not sent: the account is waiting for its probe
                raise Retryable("account rate-limited", retry_after=wait, code="rate_limited")
        if self._host is not None:
            await self._host.acquire(self._weight(operation))
        if for_account and self._account is not None and self._limits.counts_for_account(operation):
            await self._account.acquire()
        try:
            result = await call()
        except Retryable as exc:
            if exc.code == "connect":
                self._breaker.failure()
                raise
            self._breaker.success()  # a 429 is a well-formed answer: the host is up
            if gate is None or exc.code != "rate_limited":
                raise
            wait = await gate.limited(exc.retry_after)
            raise Retryable(exc.message, retry_after=wait, code=exc.code) from exc
        except Unknown:
            self._breaker.failure()
            raise
        except (NotFound, Rejected, Fatal):
            self._breaker.success()  # a 404, a refusal, a 401: well-formed answers too
            if probe and gate is not None:
                await gate.answered()
            raise
        self._breaker.success()
        if probe and gate is not None:
            await gate.answered()
        return result

    async def place_order(self, request: OrderRequest) -> BrokerOrder:
        return await self._call("place_order", lambda: self._inner.place_order(request))

    async def get_order_by_client_id(
        self, client_order_id: str, symbol: str | None = None
    ) -> BrokerOrder:
        return await self._call(
            "get_order_by_client_id",
            lambda: self._inner.get_order_by_client_id(client_order_id, symbol),
        )

    async def cancel_order(self, broker_order_id: str, symbol: str | None = None) -> None:
        await self._call("cancel_order", lambda: self._inner.cancel_order(broker_order_id, symbol))

    async def replace_order(
        self,
        broker_order_id: str,
        client_order_id: str,
        qty: Decimal,
        limit_price: Decimal | None,
        stop_price: Decimal | None,
        symbol: str | None = None,
    ) -> BrokerOrder:
        return await self._call(
            "replace_order",
            lambda: self._inner.replace_order(
                broker_order_id, client_order_id, qty, limit_price, stop_price, symbol
            ),
        )

    async def list_orders(self, after: datetime | None = None) -> list[BrokerOrder]:
        return await self._call("list_orders", lambda: self._inner.list_orders(after))

    async def positions(self) -> list[Position]:
        return await self._call("positions", self._inner.positions)

    async def account(self) -> AccountSnapshot:
        return await self._call("account", self._inner.account)

    async def instrument(self, symbol: str) -> Instrument:
        return await self._call("instrument", lambda: self._inner.instrument(symbol), False)

    async def last_price(self, symbol: str) -> Decimal:
        return await self._call("last_price", lambda: self._inner.last_price(symbol), False)


class Budgets:
    """Builds the budgets and breakers of one process from the brokers' descriptors;
    `overrides` replaces a broker's limits (the simulator's are configured)."""

    def __init__(
        self,
        redis: aioredis.Redis | None,
        max_wait_s: float,
        overrides: Mapping[str, RateLimits] | None = None,
    ) -> None:
        self._redis = redis
        self._max_wait_s = max_wait_s
        self._overrides = dict(overrides or {})
        self._breakers: dict[str, CircuitBreaker] = {}
        self._gates: dict[str, AccountGate] = {}

    def limits(self, broker: str) -> RateLimits:
        return self._overrides.get(broker) or descriptor(broker).limits

    def wrap(self, inner: Broker, broker: str, account_id: str, host: str) -> Broker:
        breaker = self._breakers.get(host)
        if breaker is None:
            breaker = self._breakers[host] = CircuitBreaker(host=host)
        limits = self.limits(broker)
        account: RateBudget | None = None
        host_budget: RateBudget | None = None
        if self._redis is not None:
            if limits.per_account is not None:
                account = RateBudget(
                    self._redis,
                    f"copytrade:budget:account:{account_id}",
                    Limit.of(limits.per_account),
                    self._max_wait_s,
                )
            if limits.per_host is not None:
                host_budget = RateBudget(
                    self._redis,
                    f"copytrade:budget:host:{host}",
                    Limit.of(limits.per_host),
                    self._max_wait_s,
                )
        gate = self._gates.get(account_id)
        if gate is None:
            gate = self._gates[account_id] = AccountGate(
                self._redis,
                f"copytrade:gate:account:{account_id}",
                PROBE_CAP_S if limits.probe_early else math.inf,
            )
        return BudgetedBroker(inner, limits, account, host_budget, breaker, gate)
