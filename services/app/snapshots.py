"""Broker snapshots a plan needs: reference price, instrument rules, master equity and position,
follower equity and positions. Fetched concurrently before the planning transaction, each with a
deadline; what cannot be fetched becomes None (the planner then skips with a reason).

Follower equity is cached in Redis for COPYTRADE_EQUITY_MAX_AGE_S (shared by all workers), so a
burst of orders does not ask every broker for the same account again. Positions are never cached:
a stale position could make an exit sell what the follower no longer holds.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import redis.asyncio as aioredis

from replication.errors import NotFound
from replication.model import (
    ZERO,
    AccountSnapshot,
    BrokerOrder,
    FollowerState,
    FollowerTarget,
    Instrument,
    MasterContext,
)
from replication.plan import master_reduces
from replication.ports import Broker
from schemas.messages import InstrumentRules, OrderMessage, PlanContext
from services.infra.lookups import SharedLookups
from services.infra.metrics import MASTER_POSITIONS
from services.infra.positions import MasterPositions

log = logging.getLogger("copytrade.snapshots")
T = TypeVar("T")
INSTRUMENT_TTL_S = 300.0
# A last price sizes notional and risk-percent copies and checks max_notional caps: shared by
# every order on the symbol for this long (its staleness is within a second of market moves).
PRICE_TTL_S = 1.0
# How far before our record of a broker-placed order its broker may have created it (the poller
# sees an order one poll interval after it was placed; after an outage, later). Only orders
# without a client id are looked up this way: at Kite (an order placed without a tag), whose
# order list is the day's whatever the start.
BROKER_ORDER_LOOKBACK = timedelta(days=1)


@dataclass
class Snapshot:
    context: MasterContext
    states: dict[str, FollowerState] = field(default_factory=dict)
    instruments: dict[str, Instrument] = field(default_factory=dict)  # by broker name


def needs_account(target: FollowerTarget) -> bool:
    return (
        target.sizing.mode in ("equity_ratio", "risk_percent")
        or target.caps.daily_loss_limit is not None
    )


def needs_reference_price(target: FollowerTarget) -> bool:
    """Only these need a price for a market order (the last trade costs a broker request)."""
    return (
        target.sizing.mode in ("notional", "risk_percent") or target.caps.max_notional is not None
    )


def needs_positions(target: FollowerTarget, exit_order: bool) -> bool:
    caps = target.caps
    return exit_order or caps.max_position is not None or caps.max_open_positions is not None


def _instrument_key(broker_name: str, symbol: str) -> str:
    return f"copytrade:instrument:{broker_name}:{symbol}"


def _signed_positions(positions: Sequence[Any]) -> dict[str, Decimal]:
    return {p.symbol: p.qty for p in positions if p.qty != 0}


class Snapshots:
    def __init__(
        self,
        redis: aioredis.Redis | None,
        deadline_s: float,
        equity_max_age_s: float,
        master_positions: MasterPositions | None = None,
    ) -> None:
        self._redis = redis
        self._master_positions = master_positions or MasterPositions(None, 0)
        self._deadline_s = deadline_s
        self._equity_max_age_s = equity_max_age_s
        # Market data, the same for every follower: asked once per key and TTL in this process
        # (services/infra/lookups.py), instruments also shared through Redis.
        self.instruments: SharedLookups[Instrument] = SharedLookups(INSTRUMENT_TTL_S)
        self.prices: SharedLookups[Decimal] = SharedLookups(PRICE_TTL_S)

    async def _try(self, what: str, call: Awaitable[T]) -> T | None:
        try:
            async with asyncio.timeout(self._deadline_s):
                return await call
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("snapshot %s failed: %s", what, exc)
            return None

    async def _account(self, account_id: str, broker: Broker) -> AccountSnapshot | None:
        key = f"copytrade:equity:{account_id}"
        if self._redis is not None:
            cached = await self._try("equity cache", self._redis.get(key))
            if cached:
                data = json.loads(cached)
                return AccountSnapshot(
                    account_id=account_id,
                    equity=Decimal(data["equity"]),
                    cash=Decimal(data["cash"]),
                    last_equity=None
                    if data["last_equity"] is None
                    else Decimal(data["last_equity"]),
                )
        snapshot = await self._try("account", broker.account())
        if snapshot is not None and self._redis is not None:
            payload = json.dumps(
                {
                    "equity": str(snapshot.equity),
                    "cash": str(snapshot.cash),
                    "last_equity": None
                    if snapshot.last_equity is None
                    else str(snapshot.last_equity),
                }
            )
            await self._try(
                "equity cache write",
                self._redis.set(key, payload, px=int(self._equity_max_age_s * 1000)),
            )
        return snapshot

    async def _instrument(self, broker_name: str, broker: Broker, symbol: str) -> Instrument:
        """A symbol's rules at a broker: from this process, else from Redis (shared by every
        worker), else from the broker (then kept in both for INSTRUMENT_TTL_S)."""
        found = await self._try(
            "instrument",
            self.instruments.get(
                (broker_name, symbol), lambda: self._fetch_instrument(broker_name, broker, symbol)
            ),
        )
        return found if found is not None else Instrument(symbol)  # whole units: conservative

    async def _fetch_instrument(self, broker_name: str, broker: Broker, symbol: str) -> Instrument:
        shared = await self._shared_instrument(broker_name, symbol)
        if shared is not None:
            return shared
        found = await broker.instrument(symbol)
        if self._redis is not None:
            payload = json.dumps([str(found.qty_step), str(found.min_qty), str(found.min_notional)])
            await self._try(
                "instrument cache write",
                self._redis.set(
                    _instrument_key(broker_name, symbol), payload, px=int(INSTRUMENT_TTL_S * 1000)
                ),
            )
        return found

    async def _shared_instrument(self, broker_name: str, symbol: str) -> Instrument | None:
        if self._redis is None:
            return None
        raw = await self._try(
            "instrument cache", self._redis.get(_instrument_key(broker_name, symbol))
        )
        if not raw:
            return None
        step, min_qty, min_notional = json.loads(raw)
        return Instrument(symbol, Decimal(step), Decimal(min_qty), Decimal(min_notional))

    async def master_positions(
        self, account_id: str, broker: Broker, use_cache: bool
    ) -> dict[str, Decimal] | None:
        """The master's signed positions: from the cache when allowed and present, otherwise
        from the broker (and then kept, unless a master leg was recorded meanwhile)."""
        cache = self._master_positions
        peeked = await self._try("master positions cache", cache.peek(account_id))
        if peeked is not None:
            generation, cached = peeked
            if use_cache and cached is not None:
                MASTER_POSITIONS.labels("hit").inc()
                return cached
        MASTER_POSITIONS.labels("broker").inc()
        positions = await self._try("master positions", broker.positions())
        if positions is None:
            return None
        signed = _signed_positions(positions)
        if peeked is not None:
            await self._try("master positions cache", cache.store(account_id, generation, signed))
        return signed

    async def master(
        self,
        order: OrderMessage,
        master_broker: Broker | None,
        needs: tuple[bool, bool],
        by_broker: dict[str, Broker],
        halts: set[str],
        now: datetime,
        day: date,
        position_cache_ok: bool = False,
        master_broker_name: str = "",
        copies: bool = True,
        broker_order_id: str | None = None,
    ) -> PlanContext:
        """The master's side of the plan (position, reference price, equity, halts) and the
        symbol's rules at every followers' broker (`by_broker`: one adapter per broker name),
        fetched concurrently; taken once per order and shared by all its shards. `needs`: whether
        any follower sizes by the master's equity, and whether any needs a reference price.
        `copies`: whether the order has followers at all; without, the master's position
        (which only sizes and classifies copies) is not read and never holds the order.
        `broker_order_id`: an order the master placed at the broker, its broker's id."""
        needs_master_equity, needs_price = needs
        names = list(by_broker)
        (position, (price, source), equity), instruments = await asyncio.gather(
            asyncio.gather(
                self._master_position(
                    order, master_broker, position_cache_ok, copies, broker_order_id
                ),
                self._reference_price(order, master_broker, needs_price, master_broker_name),
                self._master_equity(master_broker, needs_master_equity),
            ),
            asyncio.gather(*(self._instrument(n, by_broker[n], order.symbol) for n in names)),
        )
        return PlanContext(
            planned_at=now,
            trading_day=day,
            reference_price=price,
            price_source=source,
            master_equity=equity,
            master_position=position,
            # Without the master's position we cannot tell an exit from an entry: copying an
            # exit as an entry would open positions the master is closing.
            master_position_unavailable=position is None and master_broker is not None and copies,
            global_halt="global" in halts,
            master_halted=f"master:{order.master_id}" in halts,
            instruments={
                name: InstrumentRules(
                    qty_step=found.qty_step, min_qty=found.min_qty, min_notional=found.min_notional
                )
                for name, found in zip(names, instruments, strict=True)
            },
        )

    async def _master_position(
        self,
        order: OrderMessage,
        master_broker: Broker | None,
        use_cache: bool,
        copies: bool,
        broker_order_id: str | None,
    ) -> Decimal | None:
        """The master's position before this order (None without copies to size)."""
        if master_broker is None:
            return None
        if not copies:
            if order.origin == "broker":  # its fills are in the broker's positions already
                await self._master_positions.invalidate(order.account_id)
            return None
        if order.origin == "broker":
            # Placed directly at the broker: the position already holds its fills. Never from
            # the cache (a read after the order includes them): the order and the positions are
            # read together, and without the order the position is unavailable (held).
            seen, positions = await asyncio.gather(
                self._try("master order", _broker_order(master_broker, order, broker_order_id)),
                self._try("master positions", master_broker.positions()),
            )
            await self._master_positions.invalidate(order.account_id)
            if seen is None or positions is None:
                return None
            already = seen.filled_qty if order.side.value == "buy" else -seen.filled_qty
            return _signed_positions(positions).get(order.symbol, ZERO) - already
        signed = await self.master_positions(order.account_id, master_broker, use_cache=use_cache)
        return None if signed is None else signed.get(order.symbol, ZERO)

    async def _reference_price(
        self, order: OrderMessage, master_broker: Broker | None, needed: bool, broker_name: str
    ) -> tuple[Decimal | None, str]:
        if order.limit_price is not None:
            return order.limit_price, "limit_price"
        if master_broker is None or not needed:
            return None, "unavailable"
        symbol = order.symbol
        price = await self._try(
            "last price",
            self.prices.get((broker_name, symbol), lambda: master_broker.last_price(symbol)),
        )
        return (price, "last_price") if price is not None else (None, "unavailable")

    async def _master_equity(self, master_broker: Broker | None, needed: bool) -> Decimal | None:
        if not needed or master_broker is None:
            return None
        snapshot = await self._try("master account", master_broker.account())
        return None if snapshot is None else snapshot.equity

    async def followers(
        self,
        order: OrderMessage,
        plan: PlanContext,
        targets: Sequence[FollowerTarget],
        broker_of: Callable[[str], Broker],
    ) -> Snapshot:
        """Everything one shard's followers need (equity, positions, instrument rules);
        `broker_of` gives an account's adapter (asked only for the followers asked here)."""
        context = MasterContext(
            reference_price=plan.reference_price,
            price_source=plan.price_source,
            master_equity=plan.master_equity,
            master_position=plan.master_position if plan.master_position is not None else ZERO,
            global_halt=plan.global_halt,
            master_halted=plan.master_halted,
        )
        exit_order = plan.master_position is not None and master_reduces(
            order, plan.master_position
        )

        # A gated follower takes no new exposure, but its copies still follow the master's exits.
        active = [
            t for t in targets if exit_order or not (t.paused or t.account_halted or t.ending)
        ]
        if plan.master_position_unavailable:
            states = {
                t.account_id: FollowerState(unavailable="master_position_unavailable")
                for t in active
            }
        else:
            # Only followers whose sizing or caps need the broker are asked (one task each);
            # the rest plan from the ledger alone.
            asked = [t for t in active if needs_account(t) or needs_positions(t, exit_order)]
            states = {t.account_id: FollowerState() for t in active}
            states.update(
                await asyncio.gather(
                    *(self._follower(order, t, broker_of(t.account_id), exit_order) for t in asked)
                )
            )
        return Snapshot(
            context=context,
            states=states,
            instruments={
                name: Instrument(order.symbol, rules.qty_step, rules.min_qty, rules.min_notional)
                for name, rules in plan.instruments.items()
            },
        )

    async def _follower(
        self, order: OrderMessage, target: FollowerTarget, broker: Broker, exit_order: bool
    ) -> tuple[str, FollowerState]:
        account_task = self._account(target.account_id, broker) if needs_account(target) else None
        positions_task = (
            self._try("positions", broker.positions())
            if needs_positions(target, exit_order)
            else None
        )
        account = await account_task if account_task is not None else None
        positions = await positions_task if positions_task is not None else None
        unavailable = None
        if positions_task is not None and positions is None:
            unavailable = "position_unavailable"
        signed = _signed_positions(positions or [])
        return target.account_id, FollowerState(
            equity=None if account is None else account.equity,
            day_pnl=None if account is None else account.day_pnl,
            broker_position=signed.get(order.symbol, ZERO),
            open_symbols=frozenset(signed),
            unavailable=unavailable,
        )


async def _broker_order(
    broker: Broker, order: OrderMessage, broker_order_id: str | None
) -> BrokerOrder:
    """The master's broker-placed order as its broker has it now: by its client id, or, where
    the broker gave it none (a Kite order placed without a tag), by its broker order id among
    the account's recent orders."""
    if order.broker_client_order_id:
        return await broker.get_order_by_client_id(order.broker_client_order_id, order.symbol)
    if broker_order_id:
        since = order.created_at - BROKER_ORDER_LOOKBACK
        for candidate in await broker.list_orders(after=since):
            if candidate.broker_order_id == broker_order_id:
                return candidate
    raise NotFound(f"the master's broker order of {order.order_id} is not at its broker")
