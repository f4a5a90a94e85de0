"""Rows → wire models: one mapping per model, used by every route and the dashboard snapshot."""

from __future__ import annotations

from dataclasses import asdict

from schemas.api import AccountOut, CopyOut, LegCounts, MasterExecution, OrderOut, SubscriptionOut
from schemas.webhooks import AttemptOut, DeliveryOut, WebhookOut
from services.infra.db.repositories.accounts import Account
from services.infra.db.repositories.legs import Leg
from services.infra.db.repositories.orders import MasterOrder, OrderProgress
from services.infra.db.repositories.subscriptions import Subscription
from services.infra.db.repositories.webhooks import Attempt, Delivery, Webhook


def account_out(row: Account) -> AccountOut:
    return AccountOut(
        account_id=str(row.id),
        broker=row.broker,
        label=row.label,
        halted=row.halted,
        created_at=row.created_at,
    )


def subscription_out(row: Subscription) -> SubscriptionOut:
    return SubscriptionOut(
        subscription_id=str(row.id),
        master_id=str(row.master_id),
        account_id=str(row.account_id),
        sizing=row.sizing,
        caps=row.caps,
        filters=row.filters,
        paused=row.paused,
        created_at=row.created_at,
        updated_at=row.updated_at,
        ending_at=row.ending_at,
    )


def copy_out(row: Leg) -> CopyOut:
    return CopyOut(
        leg_id=str(row.id),
        order_id=str(row.order_id),
        master_id=str(row.master_id),
        account_id=str(row.account_id),
        symbol=row.symbol,
        side=row.side,
        qty=row.qty,
        status=row.status,
        reason=row.reason,
        details=row.details,
        client_order_id=row.client_order_id,
        broker_order_id=row.broker_order_id,
        filled_qty=row.filled_qty,
        filled_avg_price=row.filled_avg_price,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def order_out(row: MasterOrder, progress: OrderProgress) -> OrderOut:
    """A master order row with its fan-out progress (repositories.order_progress)."""
    return OrderOut(
        order_id=str(row.id),
        client_order_id=row.client_order_id,
        account_id=str(row.account_id),
        symbol=row.symbol,
        side=row.side,
        qty=row.qty,
        type=row.type,
        limit_price=row.limit_price,
        stop_price=row.stop_price,
        time_in_force=row.time_in_force,
        status=progress.status,
        created_at=row.created_at,
        legs=LegCounts(total=progress.total, by_status=progress.by_status),
        fanout_ms=progress.fanout_ms,
        master_execution=MasterExecution(**asdict(progress.master)) if progress.master else None,
        cancel_requested=progress.cancel_requested,
    )


def webhook_out(row: Webhook) -> WebhookOut:
    return WebhookOut(
        webhook_id=str(row.id), url=row.url, events=list(row.events), created_at=row.created_at
    )


def delivery_out(row: Delivery, attempts: list[Attempt]) -> DeliveryOut:
    return DeliveryOut(
        delivery_id=str(row.id),
        event_id=str(row.event_id),
        event=row.event,
        status=row.status,
        attempts=[
            AttemptOut(
                attempt=a.attempt,
                status_code=a.status_code,
                error=a.error,
                duration_ms=a.duration_ms,
                at=a.at,
            )
            for a in attempts
        ],
        created_at=row.created_at,
        finished_at=row.finished_at,
    )
