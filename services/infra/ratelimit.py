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
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import NoReturn, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from brokers.descriptor import RateLimits, Window
from brokers.registry import descriptor
from replication.errors import Fatal, NotFound, Rejected, Retryable, Unknown
from replication.model import AccountSnapshot, BrokerOrder, Instrument, OrderRequest, Position
from replication.ports import Broker
from replication.retry import PROBE_CAP_S
from services.infra.breaker import CircuitBreaker
from services.infra.budget_scripts import ADMISSION_SCRIPT, BUCKET_SCRIPT
from services.infra.cooldown import ANSWER_MS, AccountGate
from services.infra.metrics import BUDGET_REFUSED, BUDGET_WAIT
from services.infra.scripts import ScriptBatches, for_client

T = TypeVar("T")
__all__ = ["BUCKET_SCRIPT", "BudgetedBroker", "Budgets", "CircuitBreaker", "Limit", "RateBudget"]

# Told (in the calling task) that a call has been admitted and is about to be sent: the sender
# of an order's first batch waits for its copies to get here before it plans the next batch.
ON_ADMITTED: ContextVar[Callable[[], None] | None] = ContextVar("on_admitted", default=None)


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

    @property
    def key(self) -> str:
        return self._key

    @property
    def batches(self) -> ScriptBatches | None:
        """Where BudgetedBroker sends this budget's part of an admission (None: only through
        `acquire`)."""
        return for_client(self._redis)

    def bucket_args(self, cost: float) -> list[float]:
        """BUCKET_SCRIPT's ARGV (and one bucket's part of ADMISSION_SCRIPT's)."""
        return [self._limit.capacity, self._limit.per_second / 1000, cost, self._max_wait_ms]

    async def reserve(self, cost: float = 1.0) -> float:
        """Reserve `cost` tokens; returns seconds to wait (raises Retryable when too long)."""
        wait_ms = int(await self._script(keys=[self._key], args=self.bucket_args(cost)))
        if wait_ms < 0:
            self.refused(-wait_ms)
        return wait_ms / 1000

    def refused(self, wait_ms: int) -> NoReturn:
        BUDGET_REFUSED.labels(self._scope).inc()
        raise Retryable(
            f"rate budget {self._key} exhausted", retry_after=wait_ms / 1000, code="rate_budget"
        )

    def waits(self, wait_ms: int) -> float:
        """A reservation made (by ADMISSION_SCRIPT): seconds to wait before the call."""
        wait = wait_ms / 1000
        BUDGET_WAIT.labels(self._scope).observe(wait)
        return wait

    async def acquire(self, cost: float = 1.0) -> None:
        wait = await self.reserve(cost)
        BUDGET_WAIT.labels(self._scope).observe(wait)
        if wait > 0:
            await asyncio.sleep(wait)


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
        batches = next((b.batches for b in (account, host) if b is not None), None)
        self._admission = None if batches is None else batches.register(ADMISSION_SCRIPT)

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
        probe = await self._admit(operation, gate, for_account)
        admitted = ON_ADMITTED.get()
        if admitted is not None:
            admitted()
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

    async def _admit(self, operation: str, gate: AccountGate | None, for_account: bool) -> bool:
        """Pass the account's 429 gate, then spend the host's and the account's budgets,
        waiting for them if need be; returns whether this call is the gate's probe. Kept in
        Redis, all of it is one script (ADMISSION_SCRIPT, batched with the loop iteration's
        other calls): one round trip per batch of legs instead of one per part."""
        budgets: list[tuple[RateBudget, float]] = []
        if self._host is not None:
            budgets.append((self._host, self._weight(operation)))
        if for_account and self._account is not None and self._limits.counts_for_account(operation):
            budgets.append((self._account, 1))
        probe = False
        if gate is not None and not gate.shared:  # the gate in this process: no round trip
            probe = await self._pass(gate)
            gate = None
        if self._admission is not None and (budgets or gate is not None):
            keys = [gate.key] if gate is not None else []
            args: list[float] = [ANSWER_MS if gate is not None else 0]
            for budget, cost in budgets:
                keys.append(budget.key)
                args.extend(budget.bucket_args(cost))
            try:
                answer = await self._admission(keys=keys, args=args)
            except (RedisError, OSError):
                pass  # part by part below: the gate falls back to this process
            else:
                return await self._admitted(answer, gate, budgets) or probe
        if gate is not None:
            probe = await self._pass(gate)
        for budget, cost in budgets:
            await budget.acquire(cost)
        return probe

    @staticmethod
    async def _pass(gate: AccountGate) -> bool:
        wait, probe = await gate.admit()
        if wait > 0:
            _gate_closed(wait)
        return probe

    @staticmethod
    async def _admitted(
        answer: list[int], gate: AccountGate | None, budgets: list[tuple[RateBudget, float]]
    ) -> bool:
        """ADMISSION_SCRIPT's answer: raise when refused, else wait for the budgets."""
        code = int(answer[0])
        if code == 1:
            _gate_closed(AccountGate.answer(answer)[0])
        if code == 2:
            budgets[int(answer[2])][0].refused(int(answer[1]))
        probe = gate is not None and AccountGate.answer(answer)[1]
        wait = max(
            (budget.waits(int(ms)) for (budget, _), ms in zip(budgets, answer[2:], strict=True)),
            default=0.0,
        )
        if wait > 0:
            await asyncio.sleep(wait)
        return probe

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


def _gate_closed(wait: float) -> NoReturn:
    """Not sent: the account is waiting for its 429 gate's probe."""
    raise Retryable("account rate-limited", retry_after=wait, code="rate_limited")
