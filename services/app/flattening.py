"""Flattening: a kill switch that acts. For one flatten request (global, a master, an account
or a subscription), the sweeper cancels every resting copy in the scope, waits until no copy is
open or in doubt, then closes each copied position with a closing leg, exactly once, through
the same leg machinery as every copy (recorded before it is sent, looked up before any resend,
settled along the transition table).

A close never sells more than the follower's broker position holds in that direction: several
subscriptions of one account share what the broker reports, in subscription order.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import replace
from decimal import Decimal

from replication.ids import client_order_id
from replication.model import PlannedLeg
from replication.plan import leg_id
from replication.ports import Broker
from replication.state import LegStatus
from schemas.common import OrderType, Side, TimeInForce
from services.app.legwork import LegWork
from services.app.targets import broker_for
from services.infra.db.repositories.flattens import (
    CopiedPosition,
    FlattenRequest,
    cancel_resting_copies,
    claim_flatten,
    copied_positions,
    finish_flatten,
    flatten_order,
    open_copies,
)
from services.infra.db.repositories.legs import insert_legs
from services.infra.db.repositories.risk import LedgerEntry, add_to_ledger

log = logging.getLogger("copytrade.flatten")
ZERO = Decimal(0)


class HoldingsUnknown(Exception):
    """A broker did not say what an account holds: nothing is closed for now."""


class Flattener(LegWork):
    async def flatten_once(self) -> bool:
        """Work on the oldest pending request; True when it finished."""
        async with self.engine.begin() as conn:
            request = await claim_flatten(conn, self.lease_s)
            if request is None:
                return False
            cancels = await cancel_resting_copies(conn, request.scope)
            still_open = await open_copies(conn, request.scope)
        if cancels or still_open:
            # The cancel pass cancels them; in-doubt copies resolve first. Closing now could
            # close a position an open copy is still changing: the next pass tries again.
            log.info("flatten %s: %d to cancel, %d open", request.scope, cancels, still_open)
            return False
        async with self.engine.connect() as conn:
            positions = await copied_positions(conn, request.scope)
        try:
            closes = await self._closes(request, positions)
        except HoldingsUnknown as exc:
            # Unknown holdings: close nothing rather than guess; the request stays pending and
            # is taken again once its lease runs out.
            log.warning("flatten %s waits: %s", request.scope, exc)
            return False
        recorded = await self._record(request, closes)
        if recorded:
            outcomes = await self.sender.send_all(recorded, _sealed(positions), [])
            await self.settler.settle(outcomes)
        log.warning("flatten %s: %d copied positions closed", request.scope, len(recorded))
        return True

    async def _closes(
        self, request: FlattenRequest, positions: list[CopiedPosition]
    ) -> list[PlannedLeg]:
        """One closing leg per copied position, bounded by the broker position."""
        by_account: dict[str, list[CopiedPosition]] = defaultdict(list)
        for position in positions:
            by_account[str(position.account_id)].append(position)
        held = dict(
            zip(
                by_account,
                await asyncio.gather(
                    *(self._broker_positions(rows[0]) for rows in by_account.values())
                ),
                strict=True,
            )
        )
        legs: list[PlannedLeg] = []
        for account_id, rows in by_account.items():
            remaining = dict(held[account_id])
            for row in rows:
                available = remaining.get(row.symbol, ZERO)
                qty = _closable(row.qty, available)
                if qty <= 0:
                    continue
                remaining[row.symbol] = available - (qty if row.qty > 0 else -qty)
                legs.append(_close_leg(request, row, qty))
        return legs

    async def _broker_positions(self, row: CopiedPosition) -> dict[str, Decimal]:
        broker: Broker = broker_for(self.factory, self.cipher, row)
        try:
            async with asyncio.timeout(self.lease_s * 0.5):
                return {p.symbol: p.qty for p in await broker.positions()}
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise HoldingsUnknown(f"positions of account {row.account_id}: {exc!r}") from exc

    async def _record(self, request: FlattenRequest, legs: list[PlannedLeg]) -> list[PlannedLeg]:
        """Record the closes (each once) with their ledger change, and finish the request."""
        groups: dict[tuple[str, str], list[PlannedLeg]] = defaultdict(list)
        for leg in legs:
            groups[(str(leg.details["master_id"]), leg.symbol)].append(leg)
        mine: list[PlannedLeg] = []
        async with self.engine.begin() as conn:
            for (master_id, symbol), group in groups.items():
                total = sum((leg.qty or ZERO for leg in group), ZERO)
                order_id = await flatten_order(conn, str(request.id), master_id, symbol, total)
                closes = [_with_order(leg, order_id) for leg in group]
                inserted = set(await insert_legs(conn, master_id, closes, self.lease_s))
                mine += [leg for leg in closes if leg.leg_id in inserted]
            entries = [
                LedgerEntry(str(leg.subscription_id), leg.account_id, leg.symbol, leg.signed_qty)
                for leg in mine
            ]
            await add_to_ledger(conn, entries)
            await finish_flatten(conn, str(request.id))
        return mine


def _closable(copied: Decimal, broker_qty: Decimal) -> Decimal:
    """How much of a copied position (signed) may be closed given the broker's (signed)."""
    if copied > 0:
        return max(ZERO, min(copied, broker_qty))
    return max(ZERO, min(-copied, -broker_qty))


def _close_leg(request: FlattenRequest, row: CopiedPosition, qty: Decimal) -> PlannedLeg:
    action = f"close:{row.subscription_id}"
    return PlannedLeg(
        leg_id="",  # set once the flatten order is known (_with_order)
        order_id="",
        subscription_id=str(row.subscription_id),
        follower_id=str(row.follower_id),
        account_id=str(row.account_id),
        broker=row.broker,
        action=action,
        client_order_id="",
        symbol=row.symbol,
        side=Side.SELL if row.qty > 0 else Side.BUY,
        qty=qty,
        type=OrderType.MARKET,
        time_in_force=TimeInForce.DAY,
        limit_price=None,
        stop_price=None,
        status=LegStatus.SUBMITTING,
        reason=f"flatten: {request.scope.partition(':')[0]}",
        details={
            "flatten_request": str(request.id),
            "copy_position": str(row.qty),
            "master_id": str(row.master_id),
        },
    )


def _with_order(leg: PlannedLeg, order_id: str) -> PlannedLeg:
    return replace(
        leg,
        order_id=order_id,
        leg_id=leg_id(order_id, leg.account_id, leg.action),
        client_order_id=client_order_id(order_id, leg.account_id, leg.action),
    )


def _sealed(positions: list[CopiedPosition]) -> dict[str, CopiedPosition]:
    return {str(p.account_id): p for p in positions}
