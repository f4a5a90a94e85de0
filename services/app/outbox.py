"""Marking orders as published, in batches.

The API answers 202 once an order is in PostgreSQL and JetStream acked it; recording that it was
published is bookkeeping for the outbox (orders never marked are republished by the sweeper,
and JetStream drops the republish as a duplicate inside its window). So the API does not spend a
transaction per order on it: ids are collected and marked with one UPDATE per interval (100 ms:
at 1,000 orders/s one statement per 100 orders, and far inside the 2 s after which the sweeper
republishes an unmarked order).
A crash loses only marks, which costs a harmless republish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from services.infra.db.repositories.orders import mark_published

log = logging.getLogger("copytrade.outbox")


class PublishedMarks:
    def __init__(self, engine: AsyncEngine, interval_s: float = 0.1) -> None:
        self._engine = engine
        self._interval_s = interval_s
        self._pending: list[str] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def add(self, order_id: str) -> None:
        self._pending.append(order_id)
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self._interval_s)  # let concurrent requests join the batch
            await self.flush()

    async def flush(self) -> None:
        self._wake.clear()
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            async with self._engine.begin() as conn:
                await mark_published(conn, batch)
        except Exception:
            log.warning("could not mark %d orders published; the outbox will", len(batch))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
