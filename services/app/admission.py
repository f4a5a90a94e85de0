"""Ingest-time admission of a master's order (issue 18): would the master's broker take it?

The instrument's rules (tradable, whole or fractional units, lot step, minimum) come from an
in-process cache (INSTRUMENT_TTL_S); buying power and the last price of a market buy from a
snapshot shared in Redis for at most BUYING_POWER_MAX_AGE_S, so a burst of orders asks the
broker once. A snapshot that cannot be taken within ADMISSION_DEADLINE_S is not held against the
order: the broker still decides, and a refusal it answers later is compensated (copy_on)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import TypeVar

import redis.asyncio as aioredis

from replication.admission import Refusal, refusal
from replication.model import Instrument
from replication.ports import Broker
from schemas.common import OrderType, Side, TimeInForce
from services.infra.lookups import SharedLookups

log = logging.getLogger("copytrade.admission")
T = TypeVar("T")
INSTRUMENT_TTL_S = 300.0
BUYING_POWER_MAX_AGE_S = 1.0
ADMISSION_DEADLINE_S = 1.0


class Admission:
    def __init__(self, redis: aioredis.Redis | None) -> None:
        self._redis = redis
        self._instruments: SharedLookups[Instrument] = SharedLookups(INSTRUMENT_TTL_S)

    async def check(
        self,
        account_id: str,
        broker_name: str,
        broker: Broker,
        order: tuple[str, Side, Decimal, OrderType, TimeInForce, Decimal | None],
    ) -> Refusal | None:
        """`order` = (symbol, side, qty, type, time in force, limit price)."""
        symbol, side, qty, kind, tif, limit_price = order
        buys = side is Side.BUY
        instrument, buying_power, price = await asyncio.gather(
            self._instrument(broker_name, broker, symbol),
            self._cached(f"bp:{account_id}", lambda: self._buying_power(broker))
            if buys
            else _none(),
            self._cached(f"px:{broker_name}:{symbol}", lambda: broker.last_price(symbol))
            if buys and limit_price is None and kind is not OrderType.STOP
            else _none(),
        )
        reference = limit_price if limit_price is not None else price
        return refusal(qty, side, tif, instrument or Instrument(symbol), buying_power, reference)

    async def _instrument(self, broker_name: str, broker: Broker, symbol: str) -> Instrument | None:
        """Shared by every order of this process (one request in flight per symbol)."""
        return await _try(
            self._instruments.get((broker_name, symbol), lambda: broker.instrument(symbol))
        )

    @staticmethod
    async def _buying_power(broker: Broker) -> Decimal:
        return (await broker.account()).cash

    async def _cached(self, key: str, fetch: Callable[[], Awaitable[Decimal]]) -> Decimal | None:
        """A snapshot value shared by every API process for BUYING_POWER_MAX_AGE_S."""
        full = f"copytrade:admission:{key}"
        if self._redis is not None:
            hit = await _try(self._redis.get(full))
            if hit:
                return Decimal(json.loads(hit))
        value = await _try(fetch())
        if value is not None and self._redis is not None:
            age_ms = int(BUYING_POWER_MAX_AGE_S * 1000)
            await _try(self._redis.set(full, json.dumps(str(value)), px=age_ms))
        return value


async def _none() -> None:
    return None


async def _try(call: Awaitable[T]) -> T | None:
    try:
        async with asyncio.timeout(ADMISSION_DEADLINE_S):
            return await call
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.info("admission snapshot unavailable: %s", type(exc).__name__)
        return None
