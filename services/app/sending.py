"""Sending legs to brokers and turning answers into leg outcomes (worker and sweeper share it)."""

from __future__ import annotations

import asyncio
import logging
import time
from decimal import Decimal
from typing import Any

from replication.errors import (
    BrokerError,
    DuplicateClientOrderId,
    Fatal,
    NotFound,
    Rejected,
    Retryable,
    Unknown,
)
from replication.model import BrokerOrder, OrderRequest, PlannedLeg
from replication.ports import Broker
from replication.state import LegStatus
from schemas.common import OrderType, Side, TimeInForce
from services.infra.db.repositories import LegOutcome
from services.infra.metrics import BROKER_REQUESTS

log = logging.getLogger("copytrade.sending")


def request_from_leg(leg: PlannedLeg) -> OrderRequest:
    assert leg.qty is not None, "only planned legs with a quantity are sent"
    return OrderRequest(
        client_order_id=leg.client_order_id,
        symbol=leg.symbol,
        side=leg.side,
        qty=leg.qty,
        type=leg.type,
        time_in_force=leg.time_in_force,
        limit_price=leg.limit_price,
        stop_price=leg.stop_price,
    )


def request_from_row(row: dict[str, Any]) -> OrderRequest:
    return OrderRequest(
        client_order_id=row["client_order_id"],
        symbol=row["symbol"],
        side=Side(row["side"]),
        qty=Decimal(row["qty"]),
        type=OrderType(row["type"]),
        time_in_force=TimeInForce(row["time_in_force"]),
        limit_price=row["limit_price"],
        stop_price=row["stop_price"],
    )


def outcome_from_order(leg_id: str, order: BrokerOrder) -> LegOutcome:
    return LegOutcome(
        leg_id=leg_id,
        status=order.status,
        reason=order.reason,
        broker_order_id=order.broker_order_id,
        filled_qty=order.filled_qty,
        filled_avg_price=order.filled_avg_price,
    )


def outcome_from_error(leg_id: str, error: BrokerError, recheck_s: float) -> LegOutcome:
    """Map the taxonomy onto leg outcomes. Only Rejected and Fatal are final here."""
    if isinstance(error, Rejected):
        return LegOutcome(leg_id, LegStatus.REJECTED, reason=f"{error.code}: {error.reason}")
    if isinstance(error, Fatal):
        return LegOutcome(leg_id, LegStatus.FAILED, reason=f"{error.code}: {error.message}")
    if isinstance(error, Retryable):
        # Not placed; the sweeper (the only path that resends) retries after the broker's hint.
        return LegOutcome(
            leg_id,
            LegStatus.UNKNOWN,
            reason=f"retrying: {error.code}",
            recheck_after_s=max(error.retry_after, recheck_s),
        )
    return LegOutcome(
        leg_id, LegStatus.UNKNOWN, reason=f"in_doubt: {error.code}", recheck_after_s=recheck_s
    )


async def _timed(broker_name: str, operation: str, coro: Any) -> Any:
    started = time.perf_counter()
    outcome = "ok"
    try:
        return await coro
    except BrokerError as exc:
        outcome = exc.code
        raise
    except TimeoutError:
        outcome = "deadline"
        raise
    finally:
        BROKER_REQUESTS.labels(broker_name, operation, outcome).observe(
            time.perf_counter() - started
        )


async def place_once(
    broker: Broker,
    broker_name: str,
    leg_id: str,
    request: OrderRequest,
    deadline_s: float,
    recheck_s: float,
) -> LegOutcome:
    """Place a leg; a duplicate client id means it is already there, so look it up instead."""
    try:
        async with asyncio.timeout(deadline_s):
            try:
                order = await _timed(broker_name, "place", broker.place_order(request))
            except DuplicateClientOrderId:
                order = await _timed(
                    broker_name,
                    "lookup",
                    broker.get_order_by_client_id(request.client_order_id, request.symbol),
                )
        return outcome_from_order(leg_id, order)
    except TimeoutError:
        return outcome_from_error(leg_id, Unknown("deadline exceeded", code="deadline"), recheck_s)
    except NotFound:
        # Duplicate, then not found: the broker contradicts itself; ask again later.
        return outcome_from_error(leg_id, Unknown("duplicate but not found"), recheck_s)
    except BrokerError as exc:
        return outcome_from_error(leg_id, exc, recheck_s)
    except Exception as exc:
        # A bug or an unexpected library error: whether the order left is unknown.
        log.exception("placing leg %s failed unexpectedly", leg_id)
        return outcome_from_error(leg_id, Unknown(repr(exc)[:200], code="internal"), recheck_s)


async def look_up(
    broker: Broker,
    broker_name: str,
    leg_id: str,
    client_order_id: str,
    symbol: str,
    deadline_s: float,
    recheck_s: float,
) -> LegOutcome | None:
    """The leg's order at the broker, or None when the broker has no such order."""
    try:
        async with asyncio.timeout(deadline_s):
            order = await _timed(
                broker_name, "lookup", broker.get_order_by_client_id(client_order_id, symbol)
            )
        return outcome_from_order(leg_id, order)
    except NotFound:
        return None
    except TimeoutError:
        return outcome_from_error(leg_id, Unknown("deadline exceeded", code="deadline"), recheck_s)
    except Rejected as exc:
        return outcome_from_error(leg_id, Unknown(exc.message, code=exc.code), recheck_s)
    except BrokerError as exc:
        return outcome_from_error(leg_id, exc, recheck_s)
    except Exception as exc:
        log.exception("looking up leg %s failed unexpectedly", leg_id)
        return outcome_from_error(leg_id, Unknown(repr(exc)[:200], code="internal"), recheck_s)
