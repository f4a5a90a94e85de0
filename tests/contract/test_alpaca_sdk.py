"""alpaca-py, Alpaca's official client, drives the real simulator process (issue 17).

Every endpoint the simulator serves, every order type and time in force it accepts, its
refusals, error bodies and list filters, through the SDK's own request models; every answer
must parse into the SDK's models (a field the SDK cannot read fails the test), and every
error must parse as Alpaca's `{"code", "message"}` (APIError.code reads the JSON body).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from alpaca.common.exceptions import APIError
from alpaca.data.historical import StockHistoricalDataClient
from alpaca.data.requests import StockLatestTradeRequest
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import (
    OrderClass,
    OrderSide,
    OrderStatus,
    OrderType,
    QueryOrderStatus,
    TimeInForce,
)
from alpaca.trading.models import Asset, Order, Position, TradeAccount
from alpaca.trading.requests import (
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    ReplaceOrderRequest,
    StopLimitOrderRequest,
    StopLossRequest,
    StopOrderRequest,
    TakeProfitRequest,
    TrailingStopOrderRequest,
)

from tests.contract.servers import simulator_process

SERVED_TIME_IN_FORCE = [TimeInForce.DAY, TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK]


@pytest.fixture(scope="module")
def sim_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with simulator_process(tmp_path_factory.mktemp("alpaca_sdk") / "simulator.log") as url:
        httpx.put(f"{url}/sim/prices", json={"AAPL": "100", "MSFT": "200"}).raise_for_status()
        yield url


@pytest.fixture
def client(sim_url: str) -> TradingClient:
    keys = httpx.post(f"{sim_url}/sim/accounts", json={"cash": "1000000"}).json()
    trading = TradingClient(
        keys["key_id"], keys["secret_key"], paper=True, url_override=sim_url, raw_data=False
    )
    trading._session.trust_env = False  # loopback only, whatever proxy the machine sets
    return trading


def cid() -> str:
    return uuid.uuid4().hex[:20]


def refused(call: Callable[[], Any], status: int) -> APIError:
    """The SDK raised APIError with `status` and a body it can read as Alpaca's error."""
    with pytest.raises(APIError) as caught:
        call()
    error = caught.value
    assert error.status_code == status, (error.status_code, str(error))
    assert isinstance(error.code, int) and isinstance(error.message, str) and error.message
    return error


def order(result: Any) -> Order:
    assert isinstance(result, Order), type(result)
    return result


# Orders: every type and time in force the simulator accepts -------------------------------
@pytest.mark.parametrize("tif", SERVED_TIME_IN_FORCE, ids=lambda t: t.value)
def test_every_order_type_and_time_in_force(client: TradingClient, tif: TimeInForce) -> None:
    immediate = tif in (TimeInForce.IOC, TimeInForce.FOK)
    requests = {
        OrderType.MARKET: MarketOrderRequest(
            symbol="AAPL", qty=2, side=OrderSide.BUY, time_in_force=tif, client_order_id=cid()
        ),
        OrderType.LIMIT: LimitOrderRequest(
            symbol="AAPL",
            qty=1,
            side=OrderSide.BUY,
            time_in_force=tif,
            limit_price=90,  # below the market: rests, unless it must execute at once
            client_order_id=cid(),
        ),
        OrderType.STOP: StopOrderRequest(
            symbol="AAPL",
            qty=1,
            side=OrderSide.SELL,
            time_in_force=tif,
            stop_price=80,
            client_order_id=cid(),
        ),
        OrderType.STOP_LIMIT: StopLimitOrderRequest(
            symbol="AAPL",
            qty=1,
            side=OrderSide.SELL,
            time_in_force=tif,
            stop_price=80,
            limit_price=79,
            client_order_id=cid(),
        ),
    }
    for kind, request in requests.items():
        placed = order(client.submit_order(request))
        assert placed.type == kind and placed.time_in_force == tif
        assert placed.client_order_id == request.client_order_id
        assert placed.order_class == OrderClass.SIMPLE
        if kind is OrderType.MARKET:
            assert placed.status == OrderStatus.FILLED and placed.filled_qty == "2"
        elif immediate:
            assert placed.status == OrderStatus.CANCELED and placed.filled_qty == "0"
        else:
            assert placed.status == OrderStatus.NEW
        again = order(client.get_order_by_id(placed.id))
        assert again.status == placed.status
        assert order(client.get_order_by_client_id(placed.client_order_id)).id == placed.id


def test_fractional_day_orders_are_accepted_and_others_refused(
    client: TradingClient, sim_url: str
) -> None:
    httpx.put(f"{sim_url}/sim/assets", json={"FRAC": {"fractionable": True}}).raise_for_status()
    placed = order(
        client.submit_order(
            MarketOrderRequest(
                symbol="FRAC", qty=0.5, side=OrderSide.BUY, time_in_force=TimeInForce.DAY
            )
        )
    )
    assert placed.qty == "0.5" and placed.status == OrderStatus.FILLED
    asset = client.get_asset("FRAC")
    assert isinstance(asset, Asset) and asset.fractionable
    for tif in (TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK):
        error = refused(
            lambda tif=tif: client.submit_order(
                MarketOrderRequest(symbol="FRAC", qty=0.5, side=OrderSide.BUY, time_in_force=tif)
            ),
            422,
        )
        assert error.message == "fractional orders must be DAY orders"


# Reads and list filters --------------------------------------------------------------------
def test_account_positions_asset_and_latest_trade(client: TradingClient, sim_url: str) -> None:
    client.submit_order(
        MarketOrderRequest(symbol="MSFT", qty=3, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
    )
    account = client.get_account()
    assert isinstance(account, TradeAccount) and account.status.value == "ACTIVE"
    assert float(account.cash) == 1_000_000 - 3 * 200
    positions = client.get_all_positions()
    assert isinstance(positions, list) and all(isinstance(p, Position) for p in positions)
    assert [(p.symbol, p.qty, p.side.value) for p in positions] == [("MSFT", "3", "long")]
    asset = client.get_asset("MSFT")
    assert isinstance(asset, Asset) and asset.symbol == "MSFT" and asset.tradable
    data = StockHistoricalDataClient(client._api_key, client._secret_key, url_override=sim_url)
    data._session.trust_env = False
    trades = data.get_stock_latest_trade(StockLatestTradeRequest(symbol_or_symbols=["MSFT"]))
    assert isinstance(trades, dict) and trades["MSFT"].price == 200


def test_order_list_filters(client: TradingClient) -> None:
    def place(symbol: str, side: OrderSide, limit: float) -> Order:
        return order(
            client.submit_order(
                LimitOrderRequest(
                    symbol=symbol,
                    qty=1,
                    side=side,
                    time_in_force=TimeInForce.GTC,
                    limit_price=limit,
                )
            )
        )

    first = place("AAPL", OrderSide.BUY, 50)
    second = place("MSFT", OrderSide.BUY, 50)
    third = place("MSFT", OrderSide.SELL, 500)

    def ids(**filters: Any) -> list[str]:
        found = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, **filters))
        assert isinstance(found, list) and all(isinstance(o, Order) for o in found)
        return [str(o.id) for o in found]

    everything = ids()
    assert everything == [str(third.id), str(second.id), str(first.id)]
    assert ids(direction="asc") == everything[::-1]
    assert ids(limit=1) == [str(third.id)]
    assert ids(symbols=["MSFT"]) == [str(third.id), str(second.id)]
    assert ids(symbols=["AAPL", "MSFT"], side=OrderSide.SELL) == [str(third.id)]
    assert ids(side=OrderSide.BUY) == [str(second.id), str(first.id)]
    assert ids(until=second.submitted_at) == [str(first.id)]
    assert ids(after=first.submitted_at) == [str(third.id), str(second.id)]
    assert ids(after=first.submitted_at, until=third.submitted_at) == [str(second.id)]
    later = datetime.now(UTC) + timedelta(hours=1)
    assert ids(after=later) == []
    open_orders = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN))
    assert {str(o.id) for o in open_orders} == set(everything)  # type: ignore[union-attr]
    client.cancel_order_by_id(first.id)
    closed = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.CLOSED))
    assert [str(o.id) for o in closed] == [str(first.id)]  # type: ignore[union-attr]


# Replace and cancel ------------------------------------------------------------------------
def test_replace_cancel_and_refused_replace(client: TradingClient) -> None:
    taken = order(
        client.submit_order(
            LimitOrderRequest(
                symbol="AAPL",
                qty=1,
                side=OrderSide.BUY,
                time_in_force=TimeInForce.GTC,
                limit_price=50,
                client_order_id=cid(),
            )
        )
    )
    original = order(
        client.submit_order(
            LimitOrderRequest(
                symbol="AAPL",
                qty=1,
                side=OrderSide.BUY,
                time_in_force=TimeInForce.GTC,
                limit_price=60,
                client_order_id=cid(),
            )
        )
    )
    error = refused(
        lambda: client.replace_order_by_id(
            original.id, ReplaceOrderRequest(client_order_id=taken.client_order_id)
        ),
        422,
    )
    assert error.message == "client_order_id must be unique"
    error = refused(
        lambda: client.replace_order_by_id(original.id, ReplaceOrderRequest(qty=1_000_000)),
        403,
    )
    assert error.code == 40310000
    still = order(client.get_order_by_id(original.id))
    assert still.status == OrderStatus.NEW and still.replaced_by is None

    replacement = order(
        client.replace_order_by_id(
            original.id, ReplaceOrderRequest(qty=2, limit_price=61, client_order_id=cid())
        )
    )
    assert replacement.replaces == original.id and replacement.qty == "2"
    assert replacement.limit_price == "61"
    old = order(client.get_order_by_id(original.id))
    assert old.status == OrderStatus.REPLACED and old.replaced_by == replacement.id

    assert client.cancel_order_by_id(replacement.id) is None
    assert order(client.get_order_by_id(replacement.id)).status == OrderStatus.CANCELED
    refused(lambda: client.cancel_order_by_id(replacement.id), 422)
    refused(lambda: client.replace_order_by_id(old.id, ReplaceOrderRequest(qty=3)), 422)


# Refusals and error bodies -----------------------------------------------------------------
def test_what_the_simulator_does_not_implement_is_refused_with_alpaca_errors(
    client: TradingClient,
) -> None:
    unsupported = [
        LimitOrderRequest(
            symbol="AAPL",
            qty=1,
            side=OrderSide.BUY,
            time_in_force=TimeInForce.GTC,
            limit_price=90,
            order_class=OrderClass.BRACKET,
            take_profit=TakeProfitRequest(limit_price=120),
            stop_loss=StopLossRequest(stop_price=80),
        ),
        LimitOrderRequest(
            symbol="AAPL",
            qty=1,
            side=OrderSide.SELL,
            time_in_force=TimeInForce.GTC,
            limit_price=120,
            order_class=OrderClass.OCO,
            take_profit=TakeProfitRequest(limit_price=120),
            stop_loss=StopLossRequest(stop_price=80),
        ),
        LimitOrderRequest(
            symbol="AAPL",
            qty=1,
            side=OrderSide.BUY,
            time_in_force=TimeInForce.GTC,
            limit_price=90,
            order_class=OrderClass.OTO,
            stop_loss=StopLossRequest(stop_price=80),
        ),
        TrailingStopOrderRequest(
            symbol="AAPL", qty=1, side=OrderSide.SELL, time_in_force=TimeInForce.GTC, trail_price=5
        ),
        MarketOrderRequest(
            symbol="AAPL", notional=500, side=OrderSide.BUY, time_in_force=TimeInForce.DAY
        ),
        MarketOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.OPG),
        LimitOrderRequest(
            symbol="AAPL",
            qty=1,
            side=OrderSide.BUY,
            time_in_force=TimeInForce.CLS,
            limit_price=90,
        ),
    ]
    for request in unsupported:
        refused(lambda request=request: client.submit_order(request), 422)
    every = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL))
    assert every == []  # nothing refused was kept, nothing was kept in a simpler form

    first = MarketOrderRequest(
        symbol="AAPL",
        qty=1,
        side=OrderSide.BUY,
        time_in_force=TimeInForce.DAY,
        client_order_id=cid(),
    )
    client.submit_order(first)
    assert refused(lambda: client.submit_order(first), 422).message == (
        "client_order_id must be unique"
    )
    too_big = MarketOrderRequest(
        symbol="AAPL", qty=100_000, side=OrderSide.BUY, time_in_force=TimeInForce.DAY
    )
    assert refused(lambda: client.submit_order(too_big), 403).code == 40310000
    assert refused(lambda: client.get_order_by_id(uuid.uuid4()), 404).code == 40410000
    assert refused(lambda: client.get_order_by_client_id("nope"), 404).code == 40410000
    assert refused(lambda: client.cancel_order_by_id(uuid.uuid4()), 404).code == 40410000


def test_unserved_routes_answer_json_404_and_405(client: TradingClient) -> None:
    for call in (client.get_clock, client.get_watchlists, lambda: client.close_position("AAPL")):
        assert refused(call, 404).code == 40410000
    assert refused(client.cancel_orders, 405).code == 40510000  # DELETE /v2/orders


def test_bad_credentials_are_401(sim_url: str) -> None:
    stranger = TradingClient("PKNOBODY", "wrong", paper=True, url_override=sim_url)
    stranger._session.trust_env = False
    assert refused(stranger.get_account, 401).code == 40110000
