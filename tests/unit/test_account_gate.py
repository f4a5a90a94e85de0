"""After a 429 an account is probed with one request, not hammered (issue 16, 429 storm).

BudgetedBroker with the in-process gate (no Redis) over a scripted broker: the broker's
Retry-After is honoured up to the probe cap, every other call for the account is refused
without being sent (Retryable `rate_limited`: not placed, never `unknown`), one probe goes when
the wait is up, and a probe answered reopens the account."""

from __future__ import annotations

import asyncio
import math
from decimal import Decimal

import pytest

from brokers.descriptor import RateLimits
from replication.errors import Retryable
from replication.model import AccountSnapshot, Instrument
from replication.retry import PROBE_CAP_S, backoff_s, probe_interval_s
from services.infra.cooldown import ANSWER_S, AccountGate
from services.infra.ratelimit import BudgetedBroker, CircuitBreaker


class ScriptedAccount:
    """A broker whose account reads answer 429 while `limited` (a fake, not a mock)."""

    def __init__(self) -> None:
        self.limited = True
        self.retry_after = 61.0
        self.sent = 0

    async def account(self) -> AccountSnapshot:
        self.sent += 1
        if self.limited:
            raise Retryable("429", retry_after=self.retry_after, code="rate_limited")
        return AccountSnapshot(account_id="a", equity=Decimal(1), cash=Decimal(1))

    async def instrument(self, symbol: str) -> Instrument:
        self.sent += 1
        raise Retryable("429", retry_after=self.retry_after, code="rate_limited")


def _broker(cap_s: float = PROBE_CAP_S) -> tuple[BudgetedBroker, ScriptedAccount, AccountGate]:
    inner = ScriptedAccount()
    gate = AccountGate(None, "test", cap_s)
    broker = BudgetedBroker(inner, RateLimits(), None, None, CircuitBreaker(), gate)  # type: ignore[arg-type]
    return broker, inner, gate


async def _refused(broker: BudgetedBroker) -> Retryable:
    with pytest.raises(Retryable) as refused:
        await broker.account()
    assert refused.value.code == "rate_limited"
    return refused.value


def test_probe_intervals_honour_retry_after_up_to_the_cap() -> None:
    assert probe_interval_s(1, 61) == PROBE_CAP_S  # a minute's Retry-After: probe at the cap
    assert probe_interval_s(1, 3) == 3  # a short one is honoured in full
    assert [probe_interval_s(n, 0) for n in (1, 2, 3, 4, 5, 6)] == [1, 2, 4, 8, 15, 15]
    assert probe_interval_s(1, 61, math.inf) == 61  # a broker that bans early requests
    assert backoff_s(12, 0.0, retry_after_s=4, paced=True) == 4  # no attempt-count backoff


async def test_one_probe_per_wait_then_open(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("services.infra.cooldown.time.monotonic", lambda: now[0])
    broker, inner, _ = _broker()
    first = await _refused(broker)  # sent, answered 429 with Retry-After 61
    assert inner.sent == 1 and first.retry_after == PROBE_CAP_S
    for _ in range(10):  # the storm of legs in doubt: none is sent
        assert (await _refused(broker)).retry_after == pytest.approx(PROBE_CAP_S)
    assert inner.sent == 1
    now[0] += PROBE_CAP_S
    second = await _refused(broker)  # the probe: sent, 429 again
    assert inner.sent == 2 and second.retry_after == PROBE_CAP_S
    now[0] += PROBE_CAP_S
    inner.limited = False
    probe = asyncio.ensure_future(broker.account())
    await asyncio.sleep(0)
    await probe  # the probe is answered: the account is open
    assert inner.sent == 3
    await asyncio.gather(*(broker.account() for _ in range(5)))
    assert inner.sent == 8


async def test_calls_while_the_probe_is_out_wait_for_its_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [0.0]
    monkeypatch.setattr("services.infra.cooldown.time.monotonic", lambda: now[0])
    broker, inner, gate = _broker()
    inner.retry_after = 2.0
    await _refused(broker)
    now[0] += 2.0
    wait, probe = await gate.admit()  # someone else's probe is out …
    assert probe and wait == 0
    assert (await _refused(broker)).retry_after == pytest.approx(ANSWER_S)  # … so wait for it
    assert inner.sent == 1


async def test_market_data_does_not_touch_the_accounts_gate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [0.0]
    monkeypatch.setattr("services.infra.cooldown.time.monotonic", lambda: now[0])
    broker, _inner, gate = _broker()
    with pytest.raises(Retryable) as refused:
        await broker.instrument("AAPL")
    assert refused.value.retry_after == 61  # passed through: not the account's limit
    assert await gate.admit() == (0.0, False)  # the account is still open


async def test_a_broker_that_bans_early_requests_is_given_its_full_retry_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [0.0]
    monkeypatch.setattr("services.infra.cooldown.time.monotonic", lambda: now[0])
    broker, inner, _ = _broker(math.inf)
    assert (await _refused(broker)).retry_after == 61
    now[0] += 30
    assert (await _refused(broker)).retry_after == pytest.approx(31)
    assert inner.sent == 1
