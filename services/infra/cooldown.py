"""After a 429, an account is probed, not hammered.

A broker's `Retry-After` is honoured up to `replication.retry.PROBE_CAP_S`; when that time is up
exactly one request for the account goes out (the probe), whichever worker or sweeper sends it,
while every other call for the account is refused without being sent (`Retryable`, code
`rate_limited`: not placed, never `unknown`) and told to come back when the probe has been
answered. A probe answered 429 again starts a longer wait (exponential, capped); any other
answer reopens the account. So a 429 storm costs one request per account per wait, never a
burst of every leg in doubt, and a lifted limit is noticed within the cap.

State lives in Redis (shared by every process, Redis's own clock); without Redis, or while it
is unreachable, the gate keeps the same state in the process (never blocks on Redis)."""

from __future__ import annotations

import logging
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from replication.retry import PROBE_BASE_S, PROBE_CAP_S, probe_interval_s
from services.infra.budget_scripts import ADMISSION_SCRIPT, NOW
from services.infra.scripts import for_client

log = logging.getLogger("copytrade.cooldown")

ANSWER_S = 2.0  # while a probe is out, the others come back after this long

ANSWER_MS = int(ANSWER_S * 1000)

# KEYS[1] the account's gate (hash: n = consecutive 429s, next = ms when a probe may go).
# admit: budget_scripts.ADMISSION_SCRIPT with the gate's key only ({1, wait} or {0, probe}).
# limited: ARGV[1] the broker's Retry-After (ms); returns the wait before the next probe (ms).
_LIMITED = (
    NOW
    + """
local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
local wait = tonumber(ARGV[1])
local base = tonumber(ARGV[2]) * 2 ^ math.min(n - 1, 30)
if base > wait then wait = base end
if wait > tonumber(ARGV[3]) then wait = tonumber(ARGV[3]) end
redis.call('HSET', KEYS[1], 'next', now + wait)
redis.call('PEXPIRE', KEYS[1], wait + 600000)
return wait
"""
)


_degraded = False  # Redis unreachable: said once per outage, not once per call


def _unreachable(exc: BaseException) -> None:
    global _degraded
    if not _degraded:
        _degraded = True
        log.warning("429 gates fall back to this process (Redis: %s)", type(exc).__name__)


def _reachable() -> None:
    global _degraded
    if _degraded:
        _degraded = False
        log.warning("429 gates are shared through Redis again")


class AccountGate:
    """The 429 gate of one broker account (see the module's doc)."""

    def __init__(self, redis: aioredis.Redis | None, key: str, cap_s: float = PROBE_CAP_S) -> None:
        """`cap_s`: the longest Retry-After honoured before probing (infinite: in full)."""
        self._redis = redis
        self._key = key
        self._cap_s = cap_s
        # Asked before every account call: batched with the loop iteration's other scripts.
        self._admit = for_client(redis).register(ADMISSION_SCRIPT) if redis is not None else None
        self._limited = redis.register_script(_LIMITED) if redis is not None else None
        # The in-process fallback: consecutive 429s and when the next probe may go.
        self._n = 0
        self._next_at: float | None = None

    @property
    def key(self) -> str:
        return self._key

    @property
    def shared(self) -> bool:
        """Kept in Redis (else in this process only)."""
        return self._admit is not None

    @staticmethod
    def answer(answer: list[int]) -> tuple[float, bool]:
        """ADMISSION_SCRIPT's answer for the gate (Redis reached) as (seconds to wait, is this
        call the probe)."""
        _reachable()
        if int(answer[0]) == 1:
            return int(answer[1]) / 1000, False
        return 0.0, int(answer[1]) == 1

    async def admit(self) -> tuple[float, bool]:
        """(seconds to wait, is this call the probe); a wait > 0 means do not send."""
        if self._admit is not None:
            try:
                return self.answer(await self._admit(keys=[self._key], args=[ANSWER_MS]))
            except (RedisError, OSError) as exc:
                _unreachable(exc)
        if self._next_at is None:
            return 0.0, False
        now = time.monotonic()
        if now < self._next_at:
            return self._next_at - now, False
        self._next_at = now + ANSWER_S
        return 0.0, True

    async def limited(self, retry_after_s: float) -> float:
        """The account answered 429: seconds until one probe may go."""
        if self._limited is not None:
            try:
                args = [int(retry_after_s * 1000), int(PROBE_BASE_S * 1000), self._cap_ms()]
                return int(await self._limited(keys=[self._key], args=args)) / 1000
            except (RedisError, OSError) as exc:
                _unreachable(exc)
        self._n += 1
        wait = probe_interval_s(self._n, retry_after_s, self._cap_s)
        self._next_at = time.monotonic() + wait
        return wait

    def _cap_ms(self) -> int:
        return int(min(self._cap_s, 1e9) * 1000)

    async def answered(self) -> None:
        """The probe got a well-formed answer other than 429: the account is open again."""
        self._n, self._next_at = 0, None
        if self._redis is not None:
            try:
                await self._redis.delete(self._key)
            except (RedisError, OSError) as exc:
                _unreachable(exc)
