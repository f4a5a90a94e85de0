"""Rows → wire models: one mapping per model, used by every route and the dashboard snapshot."""

from __future__ import annotations

from dataclasses import asdict
from decimal import Decimal, InvalidOperation
from typing import Any

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
        deleting=row.deleting_at is not None,
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
        on_master_rejected=row.on_master_rejected,
    )


# What the planner records about the master, kept for the workers (replacing re-plans from it)
# but never shown to a follower: the master's absolute equity, position and order size.
MASTER_ONLY_DETAILS = frozenset({"master_equity", "master_position", "master_qty"})


def _ratio(numerator: Any, denominator: Any) -> str | None:
    try:
        top, bottom = Decimal(str(numerator)), Decimal(str(denominator))
    except (InvalidOperation, ValueError):
        return None
    if not bottom.is_finite() or bottom <= 0 or not top.is_finite():
        return None
    return format((top / bottom).quantize(Decimal("0.000001")).normalize(), "f")


def follower_details(details: dict[str, Any] | None) -> dict[str, Any]:
    """A leg's details as its follower may see them: its own figures, and the master's only
    as ratios (its equity relative to the follower's, the follower's qty per master unit)."""
    raw = details or {}
    shown = {k: v for k, v in raw.items() if k not in MASTER_ONLY_DETAILS}
    equity_ratio = _ratio(raw.get("follower_equity"), raw.get("master_equity"))
    if equity_ratio is not None:
        shown["equity_ratio"] = equity_ratio
    size_ratio = _ratio(raw.get("raw_qty"), raw.get("master_qty"))
    if size_ratio is not None:
        shown["size_ratio"] = size_ratio
    return shown


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
        details=follower_details(row.details),
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
        status="dead_lettered" if row.dead_lettered_at else progress.status,
        created_at=row.created_at,
        legs=LegCounts(total=progress.total, by_status=progress.by_status),
        fanout_ms=progress.fanout_ms,
        master_execution=MasterExecution(**asdict(progress.master)) if progress.master else None,
        cancel_requested=progress.cancel_requested,
        dead_lettered_at=row.dead_lettered_at,
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
