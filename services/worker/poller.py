"""Broker poller: copies orders a master placed directly at the broker, and follows them.

For every master account it lists the broker's orders since its cursor (kept in PostgreSQL,
with a small overlap so nothing created at the cursor's instant is missed) and ingests each
order it did not place itself, keyed by the broker's order id: seen twice, or again after a
restart, it is still one master order and one fan-out. Orders we placed (the master's own leg
of an order that came through the API) carry our client order ids and are skipped.

Fidelity: an order first seen canceled after partial fills is copied at its filled quantity.
An order seen while still open is followed (master_orders.broker_open) until it ends at the
broker: canceled (or expired, or refused) there → we request the cancel of our order (the
sweeper cancels the resting copies) and record what it filled, so the copies are brought to the
same fraction of their quantity as for an order placed through the API
(services.app.compensating); replaced there (Alpaca: a new order whose `replaces` names the old
one; brokers that modify in place: a new quantity or price) → we request the replace (the
sweeper resizes or reprices the copies, under the copies' own gates). Followed orders that a
listing does not show are looked up by their client order id.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from nats.aio.client import Client as NATS
from nats.js.client import JetStreamContext
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncEngine

from replication.errors import NotFound
from replication.model import BrokerOrder
from replication.ports import Broker
from replication.state import TERMINAL, LegStatus
from schemas.messages import SWEEP_NOW_SUBJECT
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
from services.infra.db.repositories.broker_orders import (
    followed_orders,
    set_broker_end,
    set_broker_state,
)
from services.infra.db.repositories.legs import known_client_ids
from services.infra.db.repositories.orders import (
    MasterOrder,
    insert_broker_order,
    mark_published,
    request_cancel,
    request_replace,
)
from services.infra.settings import Settings
from services.infra.wiring import runtime, serve, stop_on_signals

log = logging.getLogger("copytrade.poller")
POLLED = Counter("copytrade_poller_orders_total", "Broker orders seen by the poller", ["outcome"])
FOLLOWED = Counter(
    "copytrade_poller_followed_total",
    "Changes the master made at its broker to orders being copied",
    ["change"],
)
OVERLAP = timedelta(seconds=2)
NOT_COPIED = frozenset({LegStatus.REJECTED})
REPLACED = "replaced"  # Alpaca's status of an order that lives on as its replacement


def copyable(order: BrokerOrder) -> bool:
    if order.status in NOT_COPIED or order.broker_status == REPLACED:
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


def copied_qty(order: BrokerOrder) -> Decimal | None:
    """What a copy replicates: the order's quantity, or only what filled when it ended canceled
    (or expired) after partial fills."""
    if order.status is LegStatus.CANCELED:
        return order.filled_qty
    return order.qty


def still_open(order: BrokerOrder) -> bool:
    return order.status not in TERMINAL


def changed(row: MasterOrder, order: BrokerOrder) -> bool:
    """The broker shows other quantity or prices than our order has (a replace in place)."""
    return any(
        seen is not None and seen != ours
        for seen, ours in (
            (order.qty, row.qty),
            (order.limit_price, row.limit_price),
            (order.stop_price, row.stop_price),
        )
    )


class Poller:
    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        js: JetStreamContext,
        cipher: CredentialCipher,
        factory: BrokerFactory,
        nc: NATS | None = None,
    ) -> None:
        self.nc = nc
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
        async with self.engine.connect() as conn:
            ours = await known_client_ids(conn, account_id, [o.client_order_id for o in orders])
            named = [o.broker_order_id for o in orders] + [o.replaces for o in orders if o.replaces]
            followed = {
                f.broker_order_id: f for f in await followed_orders(conn, account_id, named)
            }
        ingested, told = 0, set()
        for order in orders:
            if order.client_order_id in ours:
                POLLED.labels("ours").inc()
                continue
            current = followed.get(order.broker_order_id)
            replaced = followed.get(order.replaces) if order.replaces else None
            if current is not None:
                told.add(current.id)
                await self._follow(current, order)
            elif replaced is not None:
                told.add(replaced.id)
                followed[order.broker_order_id] = await self._replaced(replaced, order)
            elif not copyable(order):
                POLLED.labels("not_copyable").inc()
            else:
                ingested += await self._ingest(row, order)
        rest = [f for f in followed.values() if f.broker_open and f.id not in told]
        await self._follow_unlisted(broker, rest)
        if orders:
            newest = orders[-1].created_at
            assert newest is not None
            async with self.engine.begin() as conn:
                await set_cursor(conn, account_id, newest)
        return ingested

    async def _follow_unlisted(self, broker: Broker, rows: list[MasterOrder]) -> None:
        """Followed orders created before this listing: ask the broker where each one is."""

        async def one(row: MasterOrder) -> None:
            if row.broker_client_order_id is None:
                return
            try:
                order = await broker.get_order_by_client_id(row.broker_client_order_id, row.symbol)
            except NotFound:
                return
            except Exception as exc:
                log.warning("following order %s failed: %s", row.id, exc)
                return
            await self._follow(row, order)

        await asyncio.gather(*(one(row) for row in rows))

    async def _follow(self, row: MasterOrder, order: BrokerOrder) -> None:
        """Bring our order to what the broker shows for the order carrying it."""
        if not row.broker_open or order.broker_status == REPLACED:
            return  # not followed (any more), or its replacement carries it on (in the listing)
        if still_open(order):
            if changed(row, order):
                await self._replaced(row, order)
            return
        canceled = order.status is not LegStatus.FILLED
        async with self.engine.begin() as conn:
            if canceled:
                await request_cancel(conn, str(row.id), str(row.master_id))
                await set_broker_end(conn, str(row.id), order.status.value, order.filled_qty)
            await set_broker_state(conn, str(row.id), order.broker_order_id, None, False)
        if canceled:
            FOLLOWED.labels("canceled").inc()
            log.info("master %s canceled order %s at its broker", row.master_id, row.id)
            await self._wake_sweeper(row)

    async def _replaced(self, row: MasterOrder, order: BrokerOrder) -> MasterOrder:
        """The master replaced (or modified) the order at its broker: replace ours."""
        assert order.qty is not None
        async with self.engine.begin() as conn:
            updated = await request_replace(
                conn,
                str(row.id),
                str(row.master_id),
                order.qty,
                order.limit_price,
                order.stop_price,
            )
            await set_broker_state(
                conn, str(row.id), order.broker_order_id, order.client_order_id or None, True
            )
        current = updated or row
        FOLLOWED.labels("replaced").inc()
        log.info("master %s replaced order %s at its broker", row.master_id, row.id)
        await self._wake_sweeper(row)
        if not still_open(order):  # replaced, then already ended: follow that too
            await self._follow(current, order)
        return current

    async def _wake_sweeper(self, row: MasterOrder) -> None:
        if self.nc is not None:
            try:
                await self.nc.publish(SWEEP_NOW_SUBJECT, str(row.id).encode())
            except Exception:
                log.debug("sweeper wake-up not sent; it runs on its own interval", exc_info=True)

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
                    "qty": copied_qty(order),
                    "type": order.order_type.value,
                    "limit_price": order.limit_price,
                    "stop_price": order.stop_price,
                    "time_in_force": order.time_in_force.value,
                    "broker_client_order_id": order.client_order_id or None,
                    "broker_order_id": order.broker_order_id,
                    "broker_open": still_open(order),
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
        poller = Poller(settings, rt.engine, rt.js, rt.cipher, rt.factory, rt.nc)
        log.info("poller started (every %.1fs)", settings.poll_interval_s)
        await poller.run(stop_on_signals())
    log.info("poller stopped")


if __name__ == "__main__":
    serve(main_async)
