"""Ingest-time admission of a master's order (issue 18): would the master's broker take it?

The instrument's rules (tradable, whole or fractional units, lot step, minimum) come from an
in-process cache (INSTRUMENT_TTL_S); buying power and the last price of a market buy from a
snapshot shared in Redis for at most BUYING_POWER_MAX_AGE_S, so a burst of orders asks the
broker once; each API process also keeps what it read until that age is reached (the snapshot's
expiry travels with it), so a burst reads Redis once per process, not twice per order. A
snapshot that cannot be taken within ADMISSION_DEADLINE_S is not held against the
order: the broker still decides, and a refusal it answers later is compensated (copy_on)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import TypeVar, cast

import redis.asyncio as aioredis

from replication.admission import Refusal, refusal
from replication.model import Instrument
from replication.ports import Broker
from schemas.common import OrderType, Side, TimeInForce
from services.infra.lookups import SharedLookups

log = logging.getLogger("copytrade.admission")
T = TypeVar("T")
_UNKNOWN = object()  # not in this process's memory (None is a remembered "not given")
INSTRUMENT_TTL_S = 300.0
BUYING_POWER_MAX_AGE_S = 1.0
ADMISSION_DEADLINE_S = 1.0


class Admission:
    def __init__(self, redis: aioredis.Redis | None) -> None:
        self._redis = redis
        self._instruments: SharedLookups[Instrument] = SharedLookups(INSTRUMENT_TTL_S)
        self._missing: dict[tuple[str, str], float] = {}  # instruments not given, until then
        # key → (expires at, unix seconds; value): snapshots this process read or took, and
        # None for one the broker did not give (down, or refusing the credentials): it is not
        # asked again, once per order, before that age either.
        self._snapshots: dict[str, tuple[float, Decimal | None]] = {}

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
        wants_price = buys and limit_price is None and kind is not OrderType.STOP
        keys = (f"bp:{account_id}", f"px:{broker_name}:{symbol}")
        known = (
            self._known_instrument((broker_name, symbol)),
            self._known(keys[0]) if buys else None,
            self._known(keys[1]) if wants_price else None,
        )
        if _UNKNOWN in known:  # something to ask: the broker calls run together
            instrument, buying_power, price = await asyncio.gather(
                self._instrument(broker_name, broker, symbol),
                self._cached(keys[0], lambda: self._buying_power(broker)) if buys else _none(),
                self._cached(keys[1], lambda: broker.last_price(symbol))
                if wants_price
                else _none(),
            )
        else:  # a burst of orders: everything is in this process already, no task per look-up
            instrument, buying_power, price = known  # type: ignore[assignment]
        reference = limit_price if limit_price is not None else price
        return refusal(qty, side, tif, instrument or Instrument(symbol), buying_power, reference)

    def _known_instrument(self, key: tuple[str, str]) -> Instrument | object | None:
        if self._missing.get(key, 0.0) > time.monotonic():
            return None
        found = self._instruments.peek(key)
        return _UNKNOWN if found is None else found

    def _known(self, key: str) -> Decimal | object | None:
        known = self._snapshots.get(key)
        if known is not None and known[0] > time.time():
            return known[1]
        return _UNKNOWN

    async def _instrument(self, broker_name: str, broker: Broker, symbol: str) -> Instrument | None:
        """Shared by every order of this process (one request in flight per symbol)."""
        key = (broker_name, symbol)
        known = self._known_instrument(key)
        if known is None or isinstance(known, Instrument):
            return known
        found = await _try(self._instruments.get(key, lambda: broker.instrument(symbol)))
        if found is None:  # the broker down or refusing: not asked again per order for a while
            if len(self._missing) >= 10_000:
                self._missing.clear()
            self._missing[key] = time.monotonic() + BUYING_POWER_MAX_AGE_S
        return found

    @staticmethod
    async def _buying_power(broker: Broker) -> Decimal:
        return (await broker.account()).cash

    async def _cached(self, key: str, fetch: Callable[[], Awaitable[Decimal]]) -> Decimal | None:
        """A snapshot value at most BUYING_POWER_MAX_AGE_S old (from when the broker was asked),
        shared by every API process through Redis and kept here until it is that old."""
        now = time.time()
        known = self._known(key)
        if known is not _UNKNOWN:
            return cast(Decimal | None, known)
        full = f"copytrade:admission:{key}"
        if self._redis is not None:
            hit = await _try(self._redis.get(full))
            if hit:
                shared, shared_expiry = _decode(hit)
                if shared_expiry is not None:
                    self._remember(key, shared_expiry, shared)
                return shared
        value = await _try(fetch())
        expires = now + BUYING_POWER_MAX_AGE_S  # counted from before the broker was asked
        self._remember(key, expires, value)
        if value is not None:
            if self._redis is not None:
                age_ms = int(BUYING_POWER_MAX_AGE_S * 1000)
                await _try(self._redis.set(full, json.dumps([str(value), expires]), px=age_ms))
        return value

    def _remember(self, key: str, expires: float, value: Decimal | None) -> None:
        if len(self._snapshots) >= 10_000:  # many accounts and symbols: drop the expired
            now = time.time()
            self._snapshots = {k: v for k, v in self._snapshots.items() if v[0] > now}
        self._snapshots[key] = (expires, value)


def _decode(stored: bytes | str) -> tuple[Decimal, float | None]:
    """[value, expires at] (a bare value from a release before the expiry was stored)."""
    data = json.loads(stored)
    if isinstance(data, list):
        return Decimal(data[0]), float(data[1])
    return Decimal(data), None


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
