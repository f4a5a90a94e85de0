"""The simulator's in-memory broker: accounts, orders, fills, positions. No I/O here.

Market orders fill at once at the simulator price. Limit orders fill at once when marketable,
otherwise rest until a price update crosses them; stop orders rest until triggered. Prices are
set through /sim/prices; an unknown symbol trades at DEFAULT_PRICE. IOC and FOK orders never
rest: what cannot fill at once is canceled (FOK fills in full or not at all). What the engine
does not implement it refuses with Alpaca's 422 (bracket/OCO/OTO orders, opg/cls, notional),
so a client never believes a feature works that does not.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from brokers.sim.model import (
    ASSET_NAMESPACE,
    Faults,
    SimAccount,
    SimAsset,
    SimError,
    SimOrder,
    SimPosition,
    dec,
    now,
    rfc3339,
)
from brokers.sim.validation import validate_order

# The data types moved to brokers.sim.model; they stay importable from here.
__all__ = [
    "ASSET_NAMESPACE",
    "DEFAULT_PRICE",
    "IMMEDIATE_TIME_IN_FORCE",
    "OPEN_STATUSES",
    "Engine",
    "Faults",
    "SimAccount",
    "SimAsset",
    "SimError",
    "SimOrder",
    "SimPosition",
    "dec",
    "now",
    "rfc3339",
]

DEFAULT_PRICE = Decimal("100")
OPEN_STATUSES = frozenset({"new", "accepted", "partially_filled", "pending_new"})
IMMEDIATE_TIME_IN_FORCE = frozenset({"ioc", "fok"})


class Engine:
    def __init__(self) -> None:
        self.accounts: dict[str, SimAccount] = {}
        self.by_key: dict[str, SimAccount] = {}
        self.prices: dict[str, Decimal] = {}
        self.assets: dict[str, SimAsset] = {}
        self.faults = Faults()
        self.orders_received = 0
        self.duplicates_rejected = 0
        self.rate_limited = 0  # 429 answers

    # accounts -----------------------------------------------------------------------------
    def create_account(
        self,
        cash: Decimal,
        *,
        account_id: str | None = None,
        key_id: str | None = None,
        secret_key: str | None = None,
    ) -> SimAccount:
        key = key_id or "PK" + secrets.token_hex(9).upper()
        if key in self.by_key:
            existing = self.by_key[key]
            if secret_key is not None and not secrets.compare_digest(
                existing.secret_key, secret_key
            ):
                raise SimError(409, 40910000, "key_id already exists with another secret")
            return existing
        account = SimAccount(
            account_id=account_id or str(uuid.uuid4()),
            key_id=key,
            secret_key=secret_key or secrets.token_urlsafe(30),
            cash=cash,
            created_at=now(),
            last_equity=cash,
        )
        self.accounts[account.account_id] = account
        self.by_key[account.key_id] = account
        return account

    def authenticate(self, key_id: str | None, secret_key: str | None) -> SimAccount:
        account = self.by_key.get(key_id or "")
        if account is None or not secrets.compare_digest(account.secret_key, secret_key or ""):
            raise SimError(401, 40110000, "request is not authorized")
        return account

    def faults_for(self, account: SimAccount | None) -> Faults:
        if account is not None and account.faults is not None:
            return account.faults
        return self.faults

    def asset(self, symbol: str) -> SimAsset:
        return self.assets.get(symbol) or SimAsset(symbol)

    def price(self, symbol: str) -> Decimal:
        return self.prices.get(symbol, DEFAULT_PRICE)

    def equity(self, account: SimAccount) -> Decimal:
        market = sum((p.qty * self.price(s) for s, p in account.positions.items()), Decimal("0"))
        return account.cash + market

    # orders -------------------------------------------------------------------------------
    def place(self, account: SimAccount, body: dict[str, Any]) -> SimOrder:
        request = validate_order(body)
        asset = self.asset(request["symbol"])
        if not asset.tradable:
            raise SimError(422, 40010001, f"asset {asset.symbol} is not tradable")
        if self.faults_for(account).reject_orders:
            raise SimError(403, 40310000, "insufficient buying power")
        increment = asset.min_trade_increment
        if increment is not None and request["qty"] % increment != 0:
            raise SimError(422, 40010001, f"qty must be a multiple of {dec(increment)}")
        if (
            increment is None
            and not asset.fractionable
            and request["qty"] != request["qty"].to_integral()
        ):
            raise SimError(422, 40010001, "fractional orders are not supported for this asset")
        if asset.min_order_size is not None and request["qty"] < asset.min_order_size:
            raise SimError(422, 40010001, f"qty must be at least {dec(asset.min_order_size)}")
        if request["qty"] != request["qty"].to_integral() and request["time_in_force"] != "day":
            # Alpaca's fractional rule for equities: day orders only.
            raise SimError(422, 42210000, "fractional orders must be DAY orders")
        client_order_id = request["client_order_id"] or str(uuid.uuid4())
        faults = self.faults_for(account)
        if faults.dedup_client_order_id and client_order_id in account.by_client_order_id:
            self.duplicates_rejected += 1
            raise SimError(422, 40010001, "client_order_id must be unique")
        price = self.price(request["symbol"])
        if request["side"] == "buy":
            reference = request["limit_price"] or price
            if request["qty"] * reference > account.cash:
                raise SimError(403, 40310000, "insufficient buying power")
        moment = now()
        order = SimOrder(
            id=str(uuid.uuid4()),
            account_id=account.account_id,
            client_order_id=client_order_id,
            symbol=request["symbol"],
            side=request["side"],
            qty=request["qty"],
            type=request["type"],
            time_in_force=request["time_in_force"],
            limit_price=request["limit_price"],
            stop_price=request["stop_price"],
            created_at=moment,
            status="new",
            extended_hours=bool(body.get("extended_hours", False)),
        )
        account.orders[order.id] = order
        account.by_client_order_id[client_order_id] = order
        self._try_fill(account, order, price)
        if order.time_in_force in IMMEDIATE_TIME_IN_FORCE and order.status in OPEN_STATUSES:
            order.status = "canceled"  # the unfilled rest of an IOC, or a killed FOK
            order.canceled_at = order.updated_at = now()
        return order

    def _try_fill(self, account: SimAccount, order: SimOrder, price: Decimal) -> None:
        if order.status not in OPEN_STATUSES or self.faults_for(account).no_liquidity:
            return
        kind = order.type
        if kind in ("stop", "stop_limit"):
            assert order.stop_price is not None
            triggered = (
                price >= order.stop_price if order.side == "buy" else price <= order.stop_price
            )
            if not triggered:
                return
            kind = "market" if kind == "stop" else "limit"
        if kind == "limit":
            assert order.limit_price is not None
            crosses = (
                price <= order.limit_price if order.side == "buy" else price >= order.limit_price
            )
            if not crosses:
                return
        self._fill(account, order, price)

    def _fill(self, account: SimAccount, order: SimOrder, price: Decimal) -> None:
        moment = now()
        qty = order.qty - order.filled_qty
        ratio = self.faults_for(account).partial_fill_ratio
        partial = ratio is not None and 0 < ratio < 1 and order.filled_qty == 0
        if partial and order.time_in_force == "fok":
            return  # not enough liquidity for the whole order: a FOK is killed, not split
        if partial:
            assert ratio is not None
            qty = (order.qty * Decimal(str(ratio))).quantize(Decimal(1)) or Decimal(1)
        signed = qty if order.side == "buy" else -qty
        position = account.positions.setdefault(order.symbol, SimPosition())
        new_qty = position.qty + signed
        if position.qty == 0 or (position.qty > 0) == (signed > 0):
            total = abs(position.qty) * position.avg_entry_price + qty * price
            position.avg_entry_price = total / abs(new_qty) if new_qty else Decimal("0")
        elif new_qty != 0 and (new_qty > 0) != (position.qty > 0):
            position.avg_entry_price = price  # flipped through zero
        position.qty = new_qty
        if new_qty == 0:
            del account.positions[order.symbol]
        account.cash -= signed * price
        order.filled_qty += qty
        order.filled_avg_price = price
        order.status = "filled" if order.filled_qty >= order.qty else "partially_filled"
        order.updated_at = moment
        if order.status == "filled":
            order.filled_at = moment

    def set_prices(self, prices: dict[str, Decimal]) -> int:
        self.prices.update(prices)
        filled = 0
        for account in self.accounts.values():
            for order in account.orders.values():
                if order.status in OPEN_STATUSES and order.symbol in prices:
                    self._try_fill(account, order, prices[order.symbol])
                    filled += order.status == "filled"
        return filled

    def end_day(self, account: SimAccount | None = None) -> int:
        """The trading day ends (for one account, or all): resting `day` orders expire, as
        Alpaca's do at the close (status `expired`, what they filled kept), and day P&L counts
        from the current equity. Returns how many orders expired."""
        expired = 0
        for each in [account] if account is not None else list(self.accounts.values()):
            each.last_equity = self.equity(each)
            for order in each.orders.values():
                if order.time_in_force == "day" and order.status in OPEN_STATUSES:
                    order.status = "expired"
                    order.expired_at = order.updated_at = now()
                    expired += 1
        return expired

    def cancel(self, account: SimAccount, order_id: str) -> None:
        order = account.orders.get(order_id)
        if order is None:
            raise SimError(404, 40410000, "order not found")
        if order.status not in OPEN_STATUSES:
            raise SimError(422, 42210000, f"order is not cancelable (status {order.status})")
        order.status = "canceled"
        order.canceled_at = order.updated_at = now()

    def replace(self, account: SimAccount, order_id: str, body: dict[str, Any]) -> SimOrder:
        old = account.orders.get(order_id)
        if old is None:
            raise SimError(404, 40410000, "order not found")
        if old.status not in OPEN_STATUSES:
            raise SimError(422, 42210000, f"order is not replaceable (status {old.status})")
        allowed = {"qty", "limit_price", "stop_price", "time_in_force", "client_order_id", "trail"}
        unknown = set(body) - allowed
        if unknown:
            raise SimError(422, 40010001, f"unknown fields: {sorted(unknown)}")
        merged = {
            "symbol": old.symbol,
            "side": old.side,
            "type": old.type,
            "qty": body.get("qty", dec(old.qty)),
            "time_in_force": body.get("time_in_force", old.time_in_force),
            "limit_price": body.get("limit_price", dec(old.limit_price)),
            "stop_price": body.get("stop_price", dec(old.stop_price)),
            "client_order_id": body.get("client_order_id"),
        }
        # Validate and place the replacement first: a refused replace (duplicate client order
        # id, buying power, bad price) leaves the original working, as Alpaca does.
        new = self.place(account, merged)
        new.replaces = old.id
        old.status = "replaced"
        old.replaced_at = old.updated_at = now()
        old.replaced_by = new.id
        return new

    def list_orders(
        self,
        account: SimAccount,
        status: str,
        limit: int,
        after: datetime | None,
        direction: str,
        *,
        until: datetime | None = None,
        symbols: frozenset[str] | None = None,
        side: str | None = None,
    ) -> list[SimOrder]:
        """GET /v2/orders: `after` and `until` bound the submission time (both exclusive)."""
        orders = list(account.orders.values())
        if status == "open":
            orders = [o for o in orders if o.status in OPEN_STATUSES]
        elif status == "closed":
            orders = [o for o in orders if o.status not in OPEN_STATUSES]
        if after is not None:
            orders = [o for o in orders if o.created_at > after]
        if until is not None:
            orders = [o for o in orders if o.created_at < until]
        if symbols is not None:
            orders = [o for o in orders if o.symbol in symbols]
        if side is not None:
            orders = [o for o in orders if o.side == side]
        orders.sort(key=lambda o: o.created_at, reverse=direction != "asc")
        return orders[:limit]

    def stats(self) -> dict[str, Any]:
        return {
            "orders_received": self.orders_received,
            "orders_created": sum(len(a.orders) for a in self.accounts.values()),
            "duplicates_rejected": self.duplicates_rejected,
            "rate_limited": self.rate_limited,
            "accounts": {
                a.account_id: {
                    "orders_received": a.orders_received,
                    "position_reads": a.position_reads,
                    "orders": len(a.orders),
                    "distinct_client_order_ids": len(
                        {o.client_order_id for o in a.orders.values()}
                    ),
                }
                for a in self.accounts.values()
            },
        }
