"""Rate budgets on a real Redis, shared by several clients; the circuit breaker."""

from __future__ import annotations

import asyncio
import time
import uuid
from decimal import Decimal
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from brokers.descriptor import RateLimits, Window
from replication.errors import NotFound, Retryable
from replication.model import Instrument
from services.infra.ratelimit import BudgetedBroker, CircuitBreaker, Limit, RateBudget


async def test_budget_is_shared_and_never_exceeds_the_window(servers: dict[str, str]) -> None:
    key = f"copytrade:test:budget:{uuid.uuid4().hex}"
    clients = [aioredis.from_url(servers["redis"]) for _ in range(3)]
    limit = Limit.window(50, 1.0)  # at most 50 per second, in any second
    budgets = [RateBudget(c, key, limit, max_wait_s=10) for c in clients]
    stamps: list[float] = []

    async def worker(budget: RateBudget) -> None:
        for _ in range(40):
            await budget.acquire()
            stamps.append(time.monotonic())

    started = time.monotonic()
    await asyncio.gather(*(worker(b) for b in budgets))
    elapsed = time.monotonic() - started
    stamps.sort()
    # 120 requests at 42.5/s after a burst of 2.5 take about 2.8 s …
    assert elapsed > 2.5
    # … and no one-second window ever holds more than the broker's 50.
    worst = max(sum(1 for t in stamps if s <= t < s + 1.0) for s in stamps)
    assert worst <= 50, worst
    for c in clients:
        await c.aclose()


async def test_budgets_are_independent_and_refuse_long_waits(servers: dict[str, str]) -> None:
    client = aioredis.from_url(servers["redis"])
    try:
        tight = RateBudget(client, f"copytrade:test:{uuid.uuid4().hex}", Limit(1, 0.1), 0.5)
        other = RateBudget(client, f"copytrade:test:{uuid.uuid4().hex}", Limit(1, 0.1), 0.5)
        assert await tight.reserve() == 0
        with pytest.raises(Retryable) as refused:
            await tight.reserve()  # the next token is 10 s away
        assert refused.value.code == "rate_budget" and refused.value.retry_after > 5
        assert await other.reserve() == 0  # another broker's budget is untouched
    finally:
        await client.aclose()


def test_circuit_breaker_opens_fails_fast_and_half_opens() -> None:
    now = [0.0]
    breaker = CircuitBreaker(threshold=3, reset_s=5, clock=lambda: now[0])
    for _ in range(3):
        breaker.before()
        breaker.failure()
    with pytest.raises(Retryable) as open_error:
        breaker.before()
    assert open_error.value.code == "circuit_open"
    now[0] = 6.0
    breaker.before()  # one trial call
    with pytest.raises(Retryable):
        breaker.before()  # no second caller while the trial runs
    breaker.success()
    breaker.before()
    assert breaker.failures == 0 and breaker.opened_at is None


class _MarketData:
    """A broker that answers market data and lookups (a fake)."""

    async def instrument(self, symbol: str) -> Instrument:
        return Instrument(symbol)

    async def last_price(self, symbol: str) -> Decimal:
        return Decimal("10")

    async def get_order_by_client_id(self, client_order_id: str, symbol: str | None = None) -> Any:
        raise NotFound()


async def test_market_data_spends_no_follower_budget(servers: dict[str, str]) -> None:
    """Issue 16's 429 storm: one follower's budget paid for everyone's instrument look-ups."""
    client = aioredis.from_url(servers["redis"])
    try:
        account = RateBudget(client, f"copytrade:test:{uuid.uuid4().hex}", Limit(1, 0.01), 0.1)
        broker = BudgetedBroker(
            _MarketData(),  # type: ignore[arg-type]
            RateLimits(per_account=Window(1, 60)),
            account,
            None,
            CircuitBreaker(),
        )
        for _ in range(5):  # far past the account's one request
            assert (await broker.instrument("AAPL")).symbol == "AAPL"
            assert await broker.last_price("AAPL") == Decimal("10")
        with pytest.raises(NotFound):
            await broker.get_order_by_client_id("c1")  # the account's own request: its token
        with pytest.raises(Retryable) as refused:
            await broker.get_order_by_client_id("c2")  # … and now its budget is spent
        assert refused.value.code == "rate_budget"
    finally:
        await client.aclose()


async def test_the_429_gate_is_shared_by_processes(servers: dict[str, str]) -> None:
    """Two processes' gates of one account on a real Redis: a 429 seen by one closes the account
    for both; when the wait is up exactly one call is the probe, the other waits for its
    answer; the probe answered reopens the account for both."""
    from services.infra.cooldown import ANSWER_S, AccountGate

    clients = [aioredis.from_url(servers["redis"]) for _ in range(2)]
    key = f"copytrade:test:gate:{uuid.uuid4().hex}"
    one, other = (AccountGate(c, key) for c in clients)
    try:
        assert await other.admit() == (0.0, False)  # open: not a probe
        assert await one.limited(0.3) == 1.0  # first 429: at least 1 s before a probe
        wait, probe = await other.admit()
        assert 0.5 < wait <= 1.0 and not probe  # the other process knows
        await asyncio.sleep(wait + 0.05)
        assert await other.admit() == (0.0, True)  # the probe
        wait, probe = await one.admit()
        assert ANSWER_S - 0.5 < wait <= ANSWER_S and not probe  # waits for the probe's answer
        assert await other.limited(0.0) == 2.0  # answered 429 again: 2 s this time
        await other.answered()  # well, no: the limit is lifted
        assert await one.admit() == (0.0, False)
    finally:
        for c in clients:
            await c.aclose()


class _Orders:
    """A broker whose order look-ups answer at once, counting what reached it (a fake)."""

    def __init__(self) -> None:
        self.sent = 0
        self.limited = False

    async def get_order_by_client_id(self, client_order_id: str, symbol: str | None = None) -> Any:
        self.sent += 1
        if self.limited:
            raise Retryable("429", retry_after=0.2, code="rate_limited")
        raise NotFound()


def _budgeted(
    client: aioredis.Redis, account_limit: Limit, host_limit: Limit
) -> tuple[BudgetedBroker, _Orders, RateBudget, RateBudget, Any]:
    from services.infra.cooldown import AccountGate

    run = uuid.uuid4().hex
    account = RateBudget(client, f"copytrade:test:{run}:account", account_limit, 0.5)
    host = RateBudget(client, f"copytrade:test:{run}:host", host_limit, 0.5)
    gate = AccountGate(client, f"copytrade:test:{run}:gate")
    inner = _Orders()
    limits = RateLimits(per_account=Window(1000, 60), per_host=Window(1000, 60))
    broker = BudgetedBroker(inner, limits, account, host, CircuitBreaker(), gate)  # type: ignore[arg-type]
    return broker, inner, account, host, gate


async def _tokens(client: aioredis.Redis, budget: RateBudget) -> float:
    return float(await client.hget(budget.key, "tokens") or "nan")


async def test_a_batch_of_calls_is_admitted_in_one_round_trip(servers: dict[str, str]) -> None:
    """The gate and both budgets of every call started in one loop iteration: one pipeline,
    each call spending one token of each budget."""
    from services.infra.scripts import for_client

    client = aioredis.from_url(servers["redis"])
    try:
        broker, inner, account, host, _ = _budgeted(client, Limit(100, 1), Limit(100, 1))
        batches = for_client(client)
        before = batches.round_trips
        outcomes = await asyncio.gather(
            *(broker.get_order_by_client_id(f"c{i}") for i in range(16)), return_exceptions=True
        )
        assert all(isinstance(o, NotFound) for o in outcomes) and inner.sent == 16
        assert batches.round_trips - before == 1  # was one per gate and one per budget
        assert 83.9 < await _tokens(client, account) <= 85.1
        assert 83.9 < await _tokens(client, host) <= 85.1
    finally:
        await client.aclose()


async def test_a_refused_call_spends_nothing(servers: dict[str, str]) -> None:
    """The account's budget refuses: the host's token is not spent, nothing is sent; the
    gate's probe is not taken by a call that never went."""
    client = aioredis.from_url(servers["redis"])
    try:
        broker, inner, _, host, gate = _budgeted(client, Limit(1, 0.1), Limit(50, 1))
        with pytest.raises(NotFound):
            await broker.get_order_by_client_id("c1")  # the account's one token
        host_tokens = await _tokens(client, host)
        with pytest.raises(Retryable) as refused:
            await broker.get_order_by_client_id("c2")
        assert refused.value.code == "rate_budget" and refused.value.retry_after > 5
        assert inner.sent == 1
        assert abs(await _tokens(client, host) - host_tokens) < 0.2  # only refilled
        # A 429 closes the gate; when the wait is up, a refused call does not take the probe.
        await gate.limited(0.0)
        await client.hset(gate.key, "next", 0)
        with pytest.raises(Retryable) as again:
            await broker.get_order_by_client_id("c3")
        assert again.value.code == "rate_budget"
        assert await gate.admit() == (0.0, True)  # the probe is still there to take
    finally:
        await client.aclose()


async def test_a_closed_gate_refuses_before_any_budget(servers: dict[str, str]) -> None:
    client = aioredis.from_url(servers["redis"])
    try:
        broker, inner, account, host, gate = _budgeted(client, Limit(10, 1), Limit(10, 1))
        inner.limited = True
        with pytest.raises(Retryable) as limited:
            await broker.get_order_by_client_id("c1")  # 429: the gate closes for 1 s
        assert limited.value.code == "rate_limited" and inner.sent == 1
        spent = (await _tokens(client, account), await _tokens(client, host))
        with pytest.raises(Retryable) as closed:
            await broker.get_order_by_client_id("c2")
        assert closed.value.code == "rate_limited" and 0.5 < closed.value.retry_after <= 1.0
        assert inner.sent == 1  # not sent
        after = (await _tokens(client, account), await _tokens(client, host))
        assert all(abs(a - b) < 0.1 for a, b in zip(after, spent, strict=True))  # nothing spent
        await client.hset(gate.key, "next", 0)  # the wait is up: this call is the probe
        inner.limited = False
        with pytest.raises(NotFound):
            await broker.get_order_by_client_id("c3")
        assert await client.exists(gate.key) == 0  # answered: open again
    finally:
        await client.aclose()


async def test_admission_falls_back_part_by_part_when_valkey_is_gone() -> None:
    """Valkey unreachable: the gate keeps its state in the process, and a budget that cannot
    be reached fails the call as before (never sent)."""
    client = aioredis.from_url("redis://127.0.0.1:1", socket_connect_timeout=0.2)
    try:
        broker, inner, *_ = _budgeted(client, Limit(10, 1), Limit(10, 1))
        with pytest.raises(RedisConnectionError):
            await broker.get_order_by_client_id("c1")
        assert inner.sent == 0
    finally:
        await client.aclose()
