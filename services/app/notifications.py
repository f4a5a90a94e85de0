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
- `order.dead_lettered`: from JetStream's max-deliveries advisories (services/infra/monitor.py,
  run by the sweeper): the order is read back by its stream sequence and its master told,
  once per order (its shards dead-lettered too are the same event).

`notify` and `event_id` live in services/infra/webhook_bus.py (the monitor, in infra, uses
them too).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nats.js.client import JetStreamContext

from schemas.webhooks import WebhookEventType
from services.infra.db.repositories.flattens import EndedSubscription
from services.infra.db.repositories.legs import SettledLeg
from services.infra.webhook_bus import event_id, notify

__all__ = ["event_id", "legs_announced", "notify", "subscriptions_ended"]


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
