"""Replace propagation: bring open legs to the master order's latest version (quantity, prices)
with the same sizing. Run by the sweeper; every step is safe to repeat after a crash: the new
client order id is derived from (order, account, action, version), so a replace that reached
the broker is found by lookup instead of being sent twice."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from replication.errors import BrokerError, DuplicateClientOrderId, Rejected
from replication.ids import client_order_id
from replication.model import FollowerState, Instrument, MasterContext
from replication.plan import plan_leg
from replication.ports import Broker
from replication.state import TERMINAL, LegStatus
from schemas.common import OrderType
from services.app.order_messages import order_message_from_row
from services.app.sending import look_up, outcome_from_order
from services.app.targets import target_from_row
from services.infra.brokerage import broker_day
from services.infra.db import repositories as repo

log = logging.getLogger("copytrade.replace")


def _decimal(details: dict[str, Any], key: str) -> Decimal | None:
    value = details.get(key)
    return None if value is None else Decimal(str(value))


def replanned_qty(
    leg: dict[str, Any],
    order: dict[str, Any],
    subscription: dict[str, Any] | None,
    copy_position_now: Decimal,
) -> tuple[Decimal | None, str | None]:
    """The leg's quantity for the new version of its master order, with the same sizing and the
    inputs recorded when the leg was planned (equities, reference price, positions)."""
    if leg["action"] == "master":
        return Decimal(order["qty"]), None
    if subscription is None:
        return Decimal(leg["qty"]), None  # unsubscribed since: keep the quantity, move prices
    details = dict(leg["details"] or {})
    message = order_message_from_row(order)
    reference = (
        message.limit_price
        if message.type in (OrderType.LIMIT, OrderType.STOP_LIMIT)
        else _decimal(details, "reference_price")
    )
    context = MasterContext(
        reference_price=reference,
        price_source="limit_price"
        if message.limit_price
        else details.get("price_source", "unavailable"),
        master_equity=_decimal(details, "master_equity"),
        master_position=_decimal(details, "master_position") or Decimal(0),
    )
    own = Decimal(leg["qty"]) if leg["side"] == "buy" else -Decimal(leg["qty"])
    state = FollowerState(
        equity=_decimal(details, "follower_equity"),
        day_pnl=Decimal(0),  # the day's loss limit was checked when the leg was first placed
        broker_position=_decimal(details, "follower_position") or Decimal(0),
        copy_position=copy_position_now - own,
    )
    target = replace(
        target_from_row({**subscription, "paused": False, "account_halted": False}),
        state=state,
        instrument=Instrument(message.symbol, qty_step=_decimal(details, "qty_step") or Decimal(1)),
    )
    planned = plan_leg(message, target, context, datetime.now(UTC))
    return planned.qty, planned.reason


async def replace_leg(
    engine: Any,
    broker: Broker,
    leg: dict[str, Any],
    order: dict[str, Any],
    subscription: dict[str, Any] | None,
    deadline_s: float,
    recheck_s: float,
) -> dict[str, Any] | None:
    """Replace one leg at its broker; returns the updated leg row, or None to retry later."""
    leg_id, version = str(leg["id"]), int(order["version"])
    action = f"{leg['action']}:v{version}"
    new_cid = client_order_id(str(leg["order_id"]), str(leg["account_id"]), action)
    broker_name = leg["broker"]
    found = await look_up(
        broker, broker_name, leg_id, new_cid, leg["symbol"], deadline_s, recheck_s
    )
    if found is not None and found.status is not LegStatus.UNKNOWN:
        pending = (leg["details"] or {}).get("pending_replace") or {}
        qty = Decimal(pending["qty"]) if pending.get("version") == version else None
        async with engine.begin() as conn:
            return await repo.finish_replace(conn, leg_id, version, found, new_cid, qty, True)

    async with engine.begin() as conn:
        day = broker_day(broker_name, datetime.now(UTC))
        risk = await repo.lock_risk(conn, [str(leg["account_id"])], day, leg["symbol"])
        ledger = risk.get(str(leg["account_id"]))
        copy_now = ledger.positions.get(leg["symbol"], Decimal(0)) if ledger else Decimal(0)
        qty, reason = replanned_qty(leg, order, subscription, copy_now)
        if qty is not None:
            qty = await repo.reserve_replace(conn, leg, version, qty)
    message = order_message_from_row(order)
    if qty is None:
        # The new version sizes this follower to nothing: cancel its order instead.
        try:
            async with asyncio.timeout(deadline_s):
                await broker.cancel_order(leg["broker_order_id"], leg["symbol"])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.info("cancel for replace of leg %s: %s", leg_id, exc)
        old = await look_up(
            broker,
            broker_name,
            leg_id,
            leg["client_order_id"],
            leg["symbol"],
            deadline_s,
            recheck_s,
        )
        if old is None or old.status not in TERMINAL:
            return None
        async with engine.begin() as conn:
            await repo.settle_legs(
                conn, [replace(old, reason=f"replaced: {reason}")], repo.OPEN_AT_BROKER_STATUSES
            )
            return await repo.finish_replace(conn, leg_id, version, None, None, None, False)
    try:
        async with asyncio.timeout(deadline_s):
            try:
                new = await broker.replace_order(
                    leg["broker_order_id"],
                    new_cid,
                    qty,
                    message.limit_price,
                    message.stop_price,
                    leg["symbol"],
                )
            except DuplicateClientOrderId:
                new = await broker.get_order_by_client_id(new_cid)
    except Rejected as exc:
        # Not replaceable any more (filled or canceled meanwhile): record what it became.
        log.info("replace of leg %s refused: %s", leg_id, exc)
        old = await look_up(
            broker,
            broker_name,
            leg_id,
            leg["client_order_id"],
            leg["symbol"],
            deadline_s,
            recheck_s,
        )
        async with engine.begin() as conn:
            return await repo.finish_replace(
                conn,
                leg_id,
                version,
                old if old and old.status is not LegStatus.UNKNOWN else None,
                None,
                None,
                False,
            )
    except (BrokerError, TimeoutError) as exc:
        log.info("replace of leg %s in doubt: %s", leg_id, exc)
        return None  # the lease runs out; the next pass looks the new id up first
    async with engine.begin() as conn:
        # Kite modifies in place and keeps the original tag: follow what the broker reports.
        return await repo.finish_replace(
            conn,
            leg_id,
            version,
            outcome_from_order(leg_id, new),
            new.client_order_id or new_cid,
            qty,
            True,
        )
