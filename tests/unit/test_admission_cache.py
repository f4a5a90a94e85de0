"""Ingest admission's snapshots: a burst of orders asks the broker (and Redis) once per
BUYING_POWER_MAX_AGE_S, and never uses a snapshot older than that."""

from decimal import Decimal
from typing import Any

import pytest

from replication.model import AccountSnapshot, Instrument
from schemas.common import OrderType, Side, TimeInForce
from services.app import admission as admission_module
from services.app.admission import BUYING_POWER_MAX_AGE_S, Admission


class CountingBroker:
    def __init__(self) -> None:
        self.calls: dict[str, int] = {"account": 0, "last_price": 0, "instrument": 0}
        self.cash = Decimal("1000")

    async def account(self) -> AccountSnapshot:
        self.calls["account"] += 1
        return AccountSnapshot("a", self.cash, self.cash)

    async def last_price(self, symbol: str) -> Decimal:
        self.calls["last_price"] += 1
        return Decimal("10")

    async def instrument(self, symbol: str) -> Instrument:
        self.calls["instrument"] += 1
        return Instrument(symbol)


ORDER = ("AAPL", Side.BUY, Decimal("5"), OrderType.MARKET, TimeInForce.DAY, None)


async def test_a_burst_asks_the_broker_once_and_a_stale_snapshot_is_taken_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1_000_000.0]
    monkeypatch.setattr(admission_module.time, "time", lambda: clock[0])
    broker = CountingBroker()
    admission = Admission(None)
    broker_any: Any = broker
    for _ in range(5):
        assert await admission.check("acct", "sim", broker_any, ORDER) is None
    assert broker.calls["account"] == 1 and broker.calls["last_price"] == 1
    # The broker's answer changes; within the age the kept snapshot is used...
    broker.cash = Decimal("1")
    clock[0] += BUYING_POWER_MAX_AGE_S * 0.9
    assert await admission.check("acct", "sim", broker_any, ORDER) is None
    assert broker.calls["account"] == 1
    # ...past it, the broker is asked again and its answer counts.
    clock[0] += BUYING_POWER_MAX_AGE_S * 0.2
    refused = await admission.check("acct", "sim", broker_any, ORDER)
    assert refused is not None and refused.code == "insufficient_buying_power"
    assert broker.calls["account"] == 2


def test_snapshots_from_redis_carry_their_expiry_and_old_values_still_read() -> None:
    assert admission_module._decode(b'["12.5", 1700000000.5]') == (Decimal("12.5"), 1700000000.5)
    assert admission_module._decode(b'"12.5"') == (Decimal("12.5"), None)


async def test_a_broker_that_gives_no_snapshot_is_not_asked_again_per_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Down, or refusing the credentials: the order is not held against it (no refusal), and
    the next orders within the age do not each wait for the broker again."""
    clock = [2_000_000.0]
    monkeypatch.setattr(admission_module.time, "time", lambda: clock[0])

    class Refusing(CountingBroker):
        async def account(self) -> AccountSnapshot:
            self.calls["account"] += 1
            raise RuntimeError("401 unauthorized")

        async def instrument(self, symbol: str) -> Instrument:
            self.calls["instrument"] += 1
            raise RuntimeError("401 unauthorized")

    broker = Refusing()
    broker_any: Any = broker
    admission = Admission(None)
    for _ in range(5):
        assert await admission.check("acct", "sim", broker_any, ORDER) is None
    assert broker.calls["account"] == 1 and broker.calls["instrument"] == 1
    clock[0] += BUYING_POWER_MAX_AGE_S * 1.1
    assert await admission.check("acct", "sim", broker_any, ORDER) is None
    assert broker.calls["account"] == 2


async def test_a_burst_is_judged_from_memory_without_a_task_per_look_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Once instrument, buying power and price are in this process, an order is judged from
    them directly (refusals included): no broker call and no asyncio.gather."""
    broker = CountingBroker()
    admission = Admission(None)
    broker_any: Any = broker
    assert await admission.check("acct", "sim", broker_any, ORDER) is None  # fills the memory

    def no_gather(*calls: Any) -> None:
        for call in calls:
            call.close()  # never started
        raise AssertionError("a look-up was started for values already in memory")

    monkeypatch.setattr(admission_module.asyncio, "gather", no_gather)
    too_big = ("AAPL", Side.BUY, Decimal("200"), OrderType.MARKET, TimeInForce.DAY, None)
    refused = await admission.check("acct", "sim", broker_any, too_big)
    assert refused is not None and refused.code == "insufficient_buying_power"
    assert await admission.check("acct", "sim", broker_any, ORDER) is None
    assert broker.calls == {"account": 1, "last_price": 1, "instrument": 1}
    with pytest.raises(AssertionError):  # another account is not in memory: it is asked
        await admission.check("other", "sim", broker_any, ORDER)
