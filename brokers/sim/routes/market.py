"""/v2/assets and the Market Data v2 latest-trade endpoints (served on the same host here)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from brokers.sim.engine import Engine, SimAccount, SimError, now, rfc3339
from brokers.sim.routes.common import SimState


def trade(engine: Engine, symbol: str) -> dict[str, Any]:
    """A latest trade at the simulator price, as Market Data v2's Trade schema spells it."""
    return {
        "t": rfc3339(now()),
        "x": "V",
        "p": float(engine.price(symbol)),
        "s": 100,
        "c": ["@"],
        "i": 1,
        "z": "C",
    }


class MarketRoutes:
    def __init__(self, state: SimState) -> None:
        self.state = state
        self.engine = state.engine

    async def show_asset(self, request: Request, account: SimAccount) -> Response:
        return JSONResponse(self.engine.asset(request.path_params["symbol"]).wire())

    async def asset(self, request: Request) -> Response:
        return await self.state.guarded(request, self.show_asset)

    async def one_trade(self, request: Request, account: SimAccount) -> Response:
        symbol = request.path_params["symbol"]
        return JSONResponse({"symbol": symbol, "trade": trade(self.engine, symbol)})

    async def latest_trade(self, request: Request) -> Response:
        """Alpaca Market Data v2 `GET /v2/stocks/{symbol}/trades/latest` (same host here)."""
        return await self.state.guarded(request, self.one_trade)

    async def many_trades(self, request: Request, account: SimAccount) -> Response:
        symbols = [s for s in request.query_params.get("symbols", "").split(",") if s]
        if not symbols:
            raise SimError(400, 40010001, "symbols is required")
        return JSONResponse({"trades": {symbol: trade(self.engine, symbol) for symbol in symbols}})

    async def latest_trades(self, request: Request) -> Response:
        """Market Data v2 `GET /v2/stocks/trades/latest?symbols=A,B` (what alpaca-py calls)."""
        return await self.state.guarded(request, self.many_trades)


def routes(state: SimState) -> list[Route]:
    handlers = MarketRoutes(state)
    return [
        Route("/v2/assets/{symbol}", handlers.asset, methods=["GET"]),
        Route("/v2/stocks/{symbol}/trades/latest", handlers.latest_trade, methods=["GET"]),
        Route("/v2/stocks/trades/latest", handlers.latest_trades, methods=["GET"]),
    ]
