"""What every simulator route shares: the error shape, body and query parsing, and the gate a
/v2 request passes (authentication, then rate limits, latency and injected failures)."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from brokers.sim.engine import Engine, Faults, SimAccount, SimError

Handler = Callable[[Request, SimAccount], Awaitable[Response]]


def error(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"code": code, "message": message}, status_code=status, headers=headers)


async def json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body() or b"{}")
    except ValueError as exc:
        raise SimError(400, 40010000, "request body is not valid JSON") from exc


def timestamp(text: str | None) -> datetime | None:
    """An RFC 3339 timestamp or a date (Alpaca takes both); a naive one is UTC."""
    if not text:
        return None
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass
class SimState:
    """One simulator's shared state: the engine, the fault RNG and the per-host request window.

    `timeout_hold_s` is read at request time (brokers.sim.app.TIMEOUT_HOLD_S, which tests patch).
    """

    engine: Engine
    rng: random.Random
    timeout_hold_s: Callable[[], float]
    host_window: deque[float] = field(default_factory=deque)

    def account_of(self, request: Request) -> SimAccount:
        return self.engine.authenticate(
            request.headers.get("apca-api-key-id"), request.headers.get("apca-api-secret-key")
        )

    def _host_limited(self) -> Response | None:
        host_limit = self.engine.faults.ip_rate_limit_per_s
        if host_limit:
            moment = time.monotonic()
            while self.host_window and moment - self.host_window[0] >= 1:
                self.host_window.popleft()
            if len(self.host_window) >= host_limit:
                self.engine.rate_limited += 1
                return error(429, 42910000, "too many requests from this IP", {"Retry-After": "1"})
            self.host_window.append(moment)
        return None

    def _account_limited(self, account: SimAccount, faults: Faults) -> Response | None:
        if faults.rate_limit_per_min:
            window = account.request_times
            moment = time.monotonic()
            while window and moment - window[0] >= 60:
                window.popleft()
            if len(window) >= faults.rate_limit_per_min:
                retry_after = max(1, int(60 - (moment - window[0])) + 1)
                self.engine.rate_limited += 1
                return error(
                    429, 42910000, "rate limit exceeded", {"Retry-After": str(retry_after)}
                )
            window.append(moment)
        return None

    async def apply_faults(self, account: SimAccount) -> Response | None:
        """Latency, rate limit and injected failures, in the order a real broker shows them."""
        faults = self.engine.faults_for(account)
        limited = self._host_limited()
        if limited is None:
            limited = self._account_limited(account, faults)
        if limited is not None:
            return limited
        rng = self.rng
        delay = faults.latency_ms + (rng.uniform(0, faults.jitter_ms) if faults.jitter_ms else 0)
        if delay > 0:
            await asyncio.sleep(delay / 1000)
        if faults.error_rate and rng.random() < faults.error_rate:
            return error(500, 50010000, "internal server error (injected)")
        if faults.timeout_rate and rng.random() < faults.timeout_rate:
            await asyncio.sleep(self.timeout_hold_s())
            return error(504, 50410000, "gateway timeout (injected)")
        return None

    async def guarded(self, request: Request, handler: Handler) -> Response:
        try:
            account = self.account_of(request)
            faulted = await self.apply_faults(account)
            if faulted is not None:
                return faulted
            return await handler(request, account)
        except SimError as exc:
            return error(exc.status, exc.code, exc.message)
