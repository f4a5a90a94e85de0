"""A short-lived cache of master accounts' broker positions (Redis, shared by every worker).

Planning a master order needs the master's position before it (an exit is sized differently
from an entry), and asking the broker costs a round trip on the critical path of every order.
The cache holds what the broker itself last said, never a position we computed, and is trusted
only while nothing we know of can have changed it:

- every master leg invalidates it when it is recorded, before it is sent (a generation counter is
  bumped, so a broker read that was in flight at that moment cannot be stored afterwards);
- the sweeper invalidates it whenever it settles a master leg (late fills of resting orders);
- an order the master placed directly at the broker invalidates it when the poller reports it;
- planning ignores it while the master has any master leg that is not final (DB check);
- an entry lives at most COPYTRADE_MASTER_POSITION_MAX_AGE_S (0 turns the cache off).

Left open: a trade the master makes directly at the broker is invisible until the poller sees
it, so for up to the poll interval (and at most the max age) a plan can use the position from
before that trade. A live read at that moment could only see it if the broker had already
booked it.
"""

from __future__ import annotations

import json
import logging
from decimal import Decimal

import redis.asyncio as aioredis

log = logging.getLogger("copytrade.positions")

# KEYS: generation, entry. ARGV: generation seen before the broker read, payload, max age (ms).
_STORE = """
if (redis.call('GET', KEYS[1]) or '0') == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""
_INVALIDATE = """
redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], 86400000)
redis.call('DEL', KEYS[2])
return 1
"""


def _keys(account_id: str) -> list[str]:
    return [f"copytrade:mpos-gen:{account_id}", f"copytrade:mpos:{account_id}"]


class MasterPositions:
    def __init__(self, redis: aioredis.Redis | None, max_age_s: float) -> None:
        self._redis = redis if max_age_s > 0 else None
        self._max_age_ms = int(max_age_s * 1000)
        self._store = None if self._redis is None else self._redis.register_script(_STORE)
        self._invalidate = None if self._redis is None else self._redis.register_script(_INVALIDATE)

    @property
    def enabled(self) -> bool:
        return self._redis is not None

    async def peek(self, account_id: str) -> tuple[str, dict[str, Decimal] | None] | None:
        """(generation, cached positions or None) in one round trip; None when the cache is off.
        On a miss, ask the broker and hand the answer to store() with this generation."""
        if self._redis is None:
            return None
        generation, raw = await self._redis.mget(_keys(account_id))
        seen = "0" if generation is None else str(int(generation))
        if raw is None:
            return seen, None
        return seen, {symbol: Decimal(qty) for symbol, qty in json.loads(raw).items()}

    async def store(self, account_id: str, generation: str, positions: dict[str, Decimal]) -> bool:
        """Keep what the broker said, unless a master leg was recorded since `generation`."""
        if self._store is None:
            return False
        payload = json.dumps({symbol: str(qty) for symbol, qty in positions.items()})
        stored = await self._store(
            keys=_keys(account_id), args=[generation, payload, self._max_age_ms]
        )
        return bool(stored)

    async def invalidate(self, account_id: str) -> None:
        """Best effort: when Redis cannot be reached, the entry still expires on its own
        (COPYTRADE_MASTER_POSITION_MAX_AGE_S), and planning reads from Redis fail the same way."""
        if self._invalidate is None:
            return
        try:
            await self._invalidate(keys=_keys(account_id))
        except Exception:
            log.warning("could not invalidate master positions of %s", account_id)
