"""Should the SQLAlchemy pool ping each connection before handing it out (`pool_pre_ping`)?

Measures, on an embedded PostgreSQL of its own (free port, temporary directory):
1. the cost per checkout: `SELECT 1` through `engine.connect()` N times, without and with
   pre-ping (sequential, so it is latency, not throughput);
2. what a PostgreSQL restart costs each: after `kill -9` and a restart on the same port, how
   many of the next 20 checkouts fail (each failure is a 503 `unavailable` for an API request,
   or a redelivered message for a worker) with the pool of 10 warm connections.

    .venv/bin/python -m scripts.pre_ping [--n 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from services.dev.embedded import start_postgres


def _engine(url: str, pre_ping: bool) -> AsyncEngine:
    return create_async_engine(
        url.replace("postgresql://", "postgresql+asyncpg://", 1),
        pool_size=10,
        max_overflow=0,
        pool_pre_ping=pre_ping,
    )


async def _per_checkout_us(url: str, pre_ping: bool, n: int) -> list[float]:
    engine = _engine(url, pre_ping)
    samples = []
    try:
        for _ in range(n):
            started = time.perf_counter()
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            samples.append((time.perf_counter() - started) * 1e6)
    finally:
        await engine.dispose()
    return samples[n // 10 :]  # without the warm-up


async def _failures_after_restart(url: str, pre_ping: bool, server: object) -> int:
    engine = _engine(url, pre_ping)
    try:

        async def one() -> None:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT pg_sleep(0.01)"))

        await asyncio.gather(*(one() for _ in range(10)))  # ten warm pooled connections
        server.kill()  # type: ignore[attr-defined]
        server.restart(timeout_s=60)  # type: ignore[attr-defined]
        await _accepting(url)  # up again: only the pool's stale connections can fail now
        failures = 0
        for _ in range(20):
            try:
                await one()
            except Exception:
                failures += 1
        return failures
    finally:
        await engine.dispose()


async def _accepting(url: str) -> None:
    probe = _engine(url, False)
    try:
        for _ in range(600):
            try:
                async with probe.connect() as conn:
                    await conn.execute(text("SELECT 1"))
                return
            except Exception:
                await asyncio.sleep(0.1)
    finally:
        await probe.dispose()


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        server = start_postgres(Path(directory) / "pg")
        try:
            url = server.url
            for pre_ping in (False, True, False, True):  # twice each: the machine drifts
                samples = await _per_checkout_us(url, pre_ping, n)
                print(
                    f"pool_pre_ping={pre_ping!s:5}  checkout + SELECT 1: median "
                    f"{statistics.median(samples):.0f} µs, p99 "
                    f"{statistics.quantiles(samples, n=100)[98]:.0f} µs ({len(samples)} samples)"
                )
            for pre_ping in (False, True):
                failed = await _failures_after_restart(url, pre_ping, server)
                print(f"pool_pre_ping={pre_ping!s:5}  after kill -9 + restart: {failed}/20 failed")
        finally:
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=3000)
    asyncio.run(main(parser.parse_args().n))
