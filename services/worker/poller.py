"""Broker poller: copies orders a master placed directly at the broker.

For every master account it lists the broker's orders since its cursor (kept in PostgreSQL,
with a small overlap so nothing created at the cursor's instant is missed) and ingests each
order it did not place itself, keyed by the broker's order id: seen twice, or again after a
restart, it is still one master order and one fan-out. Orders we placed (the master's own leg
of an order that came through the API) carry our client order ids and are skipped.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from datetime import UTC, datetime, timedelta

from nats.js.client import JetStreamContext
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncEngine

from replication.model import BrokerOrder
from replication.state import LegStatus
from services.app.order_messages import order_message_from_row
from services.app.targets import broker_for
from services.infra import bus
from services.infra.brokerage import BrokerFactory
from services.infra.crypto import CredentialCipher
from services.infra.db.repositories.accounts import (
    MasterAccount,
    get_cursor,
    master_accounts,
    set_cursor,
)
from services.infra.db.repositories.legs import known_client_ids
from services.infra.db.repositories.orders import insert_broker_order, mark_published
from services.infra.settings import Settings
from services.infra.wiring import runtime, serve, stop_on_signals

log = logging.getLogger("copytrade.poller")
POLLED = Counter("copytrade_poller_orders_total", "Broker orders seen by the poller", ["outcome"])
OVERLAP = timedelta(seconds=2)
NOT_COPIED = frozenset({LegStatus.REJECTED})


def copyable(order: BrokerOrder) -> bool:
    if order.status in NOT_COPIED:
        return False
    if order.status is LegStatus.CANCELED and order.filled_qty == 0:
        return False  # canceled before anything happened: nothing to copy
    return None not in (
        order.symbol,
        order.side,
        order.qty,
        order.order_type,
        order.time_in_force,
        order.created_at,
    )


class Poller:
    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        js: JetStreamContext,
        cipher: CredentialCipher,
        factory: BrokerFactory,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.js = js
        self.cipher = cipher
        self.factory = factory

    async def run(self, stop: asyncio.Event) -> None:
        interval = self.settings.poll_interval_s
        while not stop.is_set():
            try:
                await self.poll_all()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("poll failed")
            jittered = interval * random.uniform(0.8, 1.2)
            try:
                await asyncio.wait_for(stop.wait(), timeout=jittered)
            except TimeoutError:
                pass

    async def poll_all(self) -> None:
        async with self.engine.connect() as conn:
            accounts = await master_accounts(conn)
        limit = asyncio.Semaphore(16)

        async def one(row: MasterAccount) -> None:
            async with limit:
                try:
                    await self.poll_account(row)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("poll of account %s failed: %s", row.account_id, exc)

        await asyncio.gather(*(one(row) for row in accounts))

    async def poll_account(self, row: MasterAccount) -> int:
        account_id = str(row.account_id)
        async with self.engine.connect() as conn:
            cursor = await get_cursor(conn, account_id)
        now = datetime.now(UTC)
        if cursor is None:
            # First sight of this account: copy what happens from now on, not its history.
            async with self.engine.begin() as conn:
                await set_cursor(conn, account_id, now)
            return 0
        broker = broker_for(self.factory, self.cipher, row)
        orders = sorted(
            (o for o in await broker.list_orders(after=cursor - OVERLAP) if o.created_at),
            key=lambda o: (o.created_at, o.broker_order_id),
        )
        if not orders:
            return 0
        async with self.engine.connect() as conn:
            ours = await known_client_ids(conn, account_id, [o.client_order_id for o in orders])
        ingested = 0
        for order in orders:
            if order.client_order_id in ours:
                POLLED.labels("ours").inc()
                continue
            if not copyable(order):
                POLLED.labels("not_copyable").inc()
                continue
            ingested += await self._ingest(row, order)
        newest = orders[-1].created_at
        assert newest is not None
        async with self.engine.begin() as conn:
            await set_cursor(conn, account_id, newest)
        return ingested

    async def _ingest(self, row: MasterAccount, order: BrokerOrder) -> int:
        assert order.side and order.order_type and order.time_in_force and order.qty
        async with self.engine.begin() as conn:
            inserted = await insert_broker_order(
                conn,
                {
                    "id": str(uuid.uuid4()),
                    "master_id": str(row.master_id),
                    "account_id": str(row.account_id),
                    "client_order_id": f"broker:{order.broker_order_id}",
                    "symbol": order.symbol,
                    "side": order.side.value,
                    "qty": order.qty,
                    "type": order.order_type.value,
                    "limit_price": order.limit_price,
                    "stop_price": order.stop_price,
                    "time_in_force": order.time_in_force.value,
                    "broker_client_order_id": order.client_order_id or None,
                },
            )
        if inserted is None:
            POLLED.labels("repeat").inc()
            return 0  # seen before (overlap window or a restart): already copied
        await bus.publish_order(self.js, order_message_from_row(inserted))
        async with self.engine.begin() as conn:
            await mark_published(conn, [str(inserted.id)])
        POLLED.labels("ingested").inc()
        log.info(
            "copying order %s placed directly at the broker by master %s",
            order.broker_order_id,
            row.master_id,
        )
        return 1


async def main_async(settings: Settings) -> None:
    async with runtime(settings, "poller", pool_size=3) as rt:
        poller = Poller(settings, rt.engine, rt.js, rt.cipher, rt.factory)
        log.info("poller started (every %.1fs)", settings.poll_interval_s)
        await poller.run(stop_on_signals())
    log.info("poller stopped")


if __name__ == "__main__":
    serve(main_async)
