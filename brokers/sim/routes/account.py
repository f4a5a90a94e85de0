"""/v2/positions and /v2/account: an account's holdings and balances as Alpaca spells them."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from brokers.sim.engine import Engine, SimAccount, SimPosition, dec, rfc3339
from brokers.sim.model import asset_id
from brokers.sim.routes.common import SimState


def position_wire(symbol: str, p: SimPosition, price: Decimal) -> dict[str, Any]:
    """One position as Alpaca's Position schema spells it, valued at `price`."""
    market_value = p.qty * price
    cost_basis = p.qty * p.avg_entry_price
    unrealized = market_value - cost_basis
    return {
        "asset_id": asset_id(symbol),
        "symbol": symbol,
        "exchange": "NASDAQ",
        "asset_class": "us_equity",
        "avg_entry_price": dec(p.avg_entry_price),
        "qty": dec(abs(p.qty)),
        "qty_available": dec(abs(p.qty)),
        "side": "long" if p.qty > 0 else "short",
        "market_value": dec(market_value),
        "cost_basis": dec(cost_basis),
        "unrealized_pl": dec(unrealized),
        "unrealized_plpc": dec(unrealized / cost_basis if cost_basis else Decimal(0)),
        "unrealized_intraday_pl": dec(unrealized),
        "unrealized_intraday_plpc": dec(unrealized / cost_basis if cost_basis else Decimal(0)),
        "current_price": dec(price),
        "lastday_price": dec(price),
        "change_today": "0",
        "asset_marginable": True,
    }


def _balances(engine: Engine, account: SimAccount) -> dict[str, Any]:
    """The money fields of Alpaca's Account schema (the simulator has no margin)."""
    equity = engine.equity(account)
    long_value = sum(
        (p.qty * engine.price(s) for s, p in account.positions.items() if p.qty > 0),
        Decimal(0),
    )
    short_value = sum(
        (p.qty * engine.price(s) for s, p in account.positions.items() if p.qty < 0),
        Decimal(0),
    )
    return {
        "cash": dec(account.cash),
        "portfolio_value": dec(equity),
        "equity": dec(equity),
        "last_equity": dec(account.last_equity if account.last_equity is not None else equity),
        "long_market_value": dec(long_value),
        "short_market_value": dec(short_value),
        "buying_power": dec(max(account.cash, Decimal(0))),
        "regt_buying_power": dec(max(account.cash, Decimal(0))),
        "daytrading_buying_power": "0",
        "non_marginable_buying_power": dec(max(account.cash, Decimal(0))),
    }


def account_wire(engine: Engine, account: SimAccount) -> dict[str, Any]:
    """The account as Alpaca's Account schema spells it."""
    return {
        "id": account.account_id,
        "account_number": "SIM" + account.account_id.replace("-", "")[:9].upper(),
        "status": "ACTIVE",
        "currency": "USD",
        **_balances(engine, account),
        "multiplier": "1",
        "initial_margin": "0",
        "maintenance_margin": "0",
        "last_maintenance_margin": "0",
        "sma": "0",
        "daytrade_count": 0,
        "pattern_day_trader": False,
        "trade_suspended_by_user": False,
        "trading_blocked": False,
        "transfers_blocked": False,
        "account_blocked": False,
        "shorting_enabled": True,
        "accrued_fees": "0",
        "pending_transfer_in": "0",
        "pending_transfer_out": "0",
        "created_at": rfc3339(account.created_at),
        "balance_asof": account.created_at.date().isoformat(),
    }


class AccountRoutes:
    def __init__(self, state: SimState) -> None:
        self.state = state
        self.engine = state.engine

    async def list_positions(self, request: Request, account: SimAccount) -> Response:
        account.position_reads += 1
        out = [
            position_wire(symbol, p, self.engine.price(symbol))
            for symbol, p in sorted(account.positions.items())
        ]
        return JSONResponse(out)

    async def positions(self, request: Request) -> Response:
        return await self.state.guarded(request, self.list_positions)

    async def show_account(self, request: Request, account: SimAccount) -> Response:
        return JSONResponse(account_wire(self.engine, account))

    async def account_info(self, request: Request) -> Response:
        return await self.state.guarded(request, self.show_account)


def routes(state: SimState) -> list[Route]:
    handlers = AccountRoutes(state)
    return [
        Route("/v2/positions", handlers.positions, methods=["GET"]),
        Route("/v2/account", handlers.account_info, methods=["GET"]),
    ]
