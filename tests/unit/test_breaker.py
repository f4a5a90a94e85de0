"""The per-host circuit breaker closes on any well-formed answer (issue 16).

Today's stuck breaker: after a 5xx burst opened it, the half-open trial was a lookup the broker
answered 404; `BudgetedBroker._call` reported neither success nor failure, so the trial stayed
"running" for ever and every later call failed fast until the process restarted."""

from __future__ import annotations

import asyncio

import pytest

from brokers.descriptor import RateLimits
from replication.errors import Fatal, NotFound, Rejected, Retryable, Unknown
from replication.model import BrokerOrder
from services.infra.ratelimit import BudgetedBroker, CircuitBreaker


class ScriptedLookups:
    """A broker whose lookups answer what the test says (a fake, not a mock)."""

    def __init__(self) -> None:
        self.answer: Exception = Unknown("503")
        self.calls = 0

    async def get_order_by_client_id(
        self, client_order_id: str, symbol: str | None = None
    ) -> BrokerOrder:
        self.calls += 1
        raise self.answer


def _budgeted(clock: list[float]) -> tuple[BudgetedBroker, CircuitBreaker, ScriptedLookups]:
    inner = ScriptedLookups()
    breaker = CircuitBreaker(threshold=3, reset_s=5, clock=lambda: clock[0], host="sim")
    broker = BudgetedBroker(inner, RateLimits(), None, None, breaker)  # type: ignore[arg-type]
    return broker, breaker, inner


async def _lookup(broker: BudgetedBroker) -> Exception:
    try:
        await broker.get_order_by_client_id("c1")
    except Exception as exc:
        return exc
    raise AssertionError("the scripted broker always raises")


@pytest.mark.parametrize(
    "answer",
    [
        NotFound(),
        Rejected("no such symbol"),
        Retryable("429", retry_after=1, code="rate_limited"),
        Fatal("401"),
    ],
)
def test_a_well_formed_trial_answer_closes_the_breaker(answer: Exception) -> None:
    clock = [0.0]
    broker, breaker, inner = _budgeted(clock)

    async def scenario() -> None:
        for _ in range(3):  # a 5xx burst opens it
            assert isinstance(await _lookup(broker), Unknown)
        assert breaker.opened_at is not None
        refused = await _lookup(broker)
        assert isinstance(refused, Retryable) and refused.code == "circuit_open"
        clock[0] = 6.0
        inner.answer = answer  # the half-open trial: the host answers, whatever it says
        assert type(await _lookup(broker)) is type(answer)
        assert breaker.opened_at is None and breaker.failures == 0
        calls = inner.calls
        clock[0] = 6.1
        assert type(await _lookup(broker)) is type(answer)  # not failed fast any more
        assert inner.calls == calls + 1

    asyncio.run(scenario())


def test_a_trial_that_never_answers_does_not_hold_the_breaker_half_open() -> None:
    clock = [0.0]
    breaker = CircuitBreaker(threshold=1, reset_s=5, clock=lambda: clock[0])
    breaker.before()
    breaker.failure()
    clock[0] = 6.0
    breaker.before()  # the trial starts, then is cancelled: neither success nor failure
    with pytest.raises(Retryable):
        breaker.before()  # a second caller waits while the trial may still answer
    clock[0] = 12.0
    breaker.before()  # the trial is stale: another caller may try
    breaker.success()
    assert breaker.opened_at is None


def test_failures_still_open_it_and_keep_it_open() -> None:
    clock = [0.0]
    broker, _, _ = _budgeted(clock)

    async def scenario() -> None:
        for _ in range(3):
            await _lookup(broker)
        clock[0] = 6.0
        assert isinstance(await _lookup(broker), Unknown)  # the trial fails: open again
        refused = await _lookup(broker)
        assert isinstance(refused, Retryable) and refused.code == "circuit_open"

    asyncio.run(scenario())
