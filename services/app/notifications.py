"""Events people are told about by webhook (services/worker/notifier.py delivers them).

Producers call `notify` (or a helper below); it publishes one event to the durable JetStream
queue and never fails its caller: a lost notification is logged, the trading path goes on.

Where each event comes from:
- `leg.failed`: Settler.announce (services/app/settling.py), the one place legs are announced
  (`legs_announced`).
- `account.halted`: POST /v1/accounts/{id}/halt (the account's owner).
- `subscription.ended`: an ended subscription removed once flat (end_flat_subscriptions, from
  the sweeper and DELETE /v1/subscriptions) or at once with `positions=keep`.
- `daily_loss_limit`: also from Settler.announce, when a copy is skipped by the cap (reason
  `daily_loss_limit`): once per subscription and UTC day.
- `order.dead_lettered`: a hook only, no producer yet: dead letters are counted from JetStream
  advisories (services/infra/monitor.py, in the sweeper) without reading the order back; a
  producer there would read the message by its stream sequence and call
  `notify(js, master_id, WebhookEventType.ORDER_DEAD_LETTERED, {...})`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from nats.js.client import JetStreamContext

from schemas.webhooks import WebhookEvent, WebhookEventType
from services.infra.db.repositories.flattens import EndedSubscription
from services.infra.db.repositories.legs import SettledLeg
from services.infra.webhook_bus import publish_event

log = logging.getLogger("copytrade.notifications")
_EVENTS = uuid.UUID("0b6a8f8e-5d1c-4d4e-9f55-3c1f2f0c7a15")


def event_id(*parts: object) -> str:
    """A deterministic id: the same happening announced twice is one event."""
    return str(uuid.uuid5(_EVENTS, "|".join(str(p) for p in parts)))


async def notify(
    js: JetStreamContext,
    user_id: str,
    kind: WebhookEventType,
    data: dict[str, Any],
    ident: str | None = None,
) -> None:
    event = WebhookEvent(
        event_id=ident or str(uuid.uuid4()),
        type=kind,
        user_id=user_id,
        occurred_at=datetime.now(UTC),
        data=data,
    )
    try:
        await publish_event(js, event)
    except Exception:
        log.warning("notification %s for %s not queued", kind.value, user_id, exc_info=True)


def _leg_data(row: SettledLeg) -> dict[str, Any]:
    return {
        "leg_id": str(row.id),
        "order_id": str(row.order_id),
        "master_id": str(row.master_id),
        "subscription_id": None if row.subscription_id is None else str(row.subscription_id),
        "account_id": str(row.account_id),
        "symbol": row.symbol,
        "side": row.side,
        "qty": None if row.qty is None else str(row.qty),
        "reason": row.reason,
        "client_order_id": row.client_order_id,
    }


async def legs_announced(js: JetStreamContext, rows: Sequence[SettledLeg]) -> None:
    """From the legs Settler.announce publishes: `leg.failed` to each follower whose copy just
    failed; `daily_loss_limit` to each follower whose copy was skipped by that cap (once per
    subscription and UTC day: later skips that day are the same event)."""
    for row in rows:
        if row.follower_id is None or row.action == "master":
            continue
        if row.status == "failed":
            ident = event_id("leg.failed", row.id, row.updated_at.isoformat())
            kind = WebhookEventType.LEG_FAILED
        elif row.status == "skipped" and row.reason == "daily_loss_limit":
            ident = event_id("daily_loss_limit", row.subscription_id, row.updated_at.date())
            kind = WebhookEventType.DAILY_LOSS_LIMIT
        else:
            continue
        await notify(js, str(row.follower_id), kind, _leg_data(row), ident)


async def subscriptions_ended(js: JetStreamContext, rows: Sequence[EndedSubscription]) -> None:
    """`subscription.ended` to each follower whose subscription was removed."""
    for row in rows:
        data = {
            "subscription_id": str(row.id),
            "master_id": str(row.master_id),
            "account_id": str(row.account_id),
        }
        ident = event_id("subscription.ended", row.id)
        await notify(js, str(row.follower_id), WebhookEventType.SUBSCRIPTION_ENDED, data, ident)
