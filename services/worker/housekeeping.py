"""The sweeper's housekeeping, once per pass: subscriptions that ended and are flat, accounts
deleted with `?positions=close` that are flat, orders stuck in the outbox or parked after
running out of deliveries, expired refresh tokens."""

from __future__ import annotations

import logging
import time

from nats.js.client import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncEngine

from services.app.notifications import subscriptions_ended
from services.app.order_messages import order_message_from_row
from services.infra import bus
from services.infra.crypto import CredentialCipher
from services.infra.db.repositories.accounts import delete_account, flat_deleting_accounts
from services.infra.db.repositories.dead_letters import due_dead_letters, revive
from services.infra.db.repositories.flattens import end_flat_subscriptions
from services.infra.db.repositories.orders import mark_published, orders_by_ids, unpublished_orders
from services.infra.db.repositories.sessions import purge_expired
from services.infra.metrics import DEAD_LETTERS_RETRIED, OUTBOX_REPUBLISHED
from services.infra.settings import Settings

log = logging.getLogger("copytrade.sweeper")
# Refresh tokens expired for a day are purged, once an hour (services/app/sessions.py).
PURGE_EVERY_S = 3600.0
PURGE_GRACE_S = 86_400


class Housekeeping:
    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        js: JetStreamContext,
        cipher: CredentialCipher,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.js = js
        self.cipher = cipher
        self._next_purge = 0.0

    async def run_once(self) -> None:
        await self.end_subscriptions()
        await self.retire_deleted_accounts()
        await self.republish_outbox()
        await self.retry_dead_letters()
        await self.purge_sessions()

    async def end_subscriptions(self) -> None:
        """Remove ended subscriptions once the master's exits have flattened their copies."""
        async with self.engine.begin() as conn:
            ended = await end_flat_subscriptions(conn)
        if ended:
            log.info("%d ended subscriptions are flat and removed", len(ended))
            await subscriptions_ended(self.js, ended)

    async def retire_deleted_accounts(self) -> None:
        """Accounts deleted with `?positions=close` whose flatten is done and no leg is open:
        retired now (tombstone credentials: no adapter, so no leg, can reach them again)."""
        async with self.engine.begin() as conn:
            for account in await flat_deleting_accounts(conn):
                tombstone = self.cipher.encrypt(str(account.id), {})
                await delete_account(conn, str(account.id), str(account.user_id), tombstone)
                log.info("account %s is flat and deleted", account.id)

    async def retry_dead_letters(self, limit: int = 50) -> None:
        """Republish orders parked after exhausting their deliveries (a fresh message id, so the
        stream's duplicate window does not swallow it; the legs' unique keys keep it one copy
        per follower). Cleared only once JetStream has the message."""
        async with self.engine.begin() as conn:
            ids = await due_dead_letters(conn, self.settings.dead_letter_retry_s, limit)
            if not ids:
                return
            orders = await orders_by_ids(conn, ids)
            for order_id, row in orders.items():
                message = order_message_from_row(row)
                await bus.publish_order(self.js, message, message_id=f"{order_id}:{time.time_ns()}")
                await revive(conn, [order_id])
                DEAD_LETTERS_RETRIED.inc()
                log.info("dead-lettered order %s republished", order_id)

    async def purge_sessions(self) -> None:
        """Expired refresh tokens and their empty families, at most once per PURGE_EVERY_S."""
        if time.monotonic() < self._next_purge:
            return
        self._next_purge = time.monotonic() + PURGE_EVERY_S
        async with self.engine.begin() as conn:
            purged = await purge_expired(conn, grace_s=PURGE_GRACE_S)
        if purged:
            log.info("%d expired refresh tokens purged", purged)

    async def republish_outbox(self) -> None:
        async with self.engine.connect() as conn:
            rows = await unpublished_orders(conn, older_than_s=2.0, limit=100)
        for row in rows:
            await bus.publish_order(self.js, order_message_from_row(row))
            async with self.engine.begin() as conn:
                await mark_published(conn, [str(row.id)])
            OUTBOX_REPUBLISHED.inc()
