"""Broker descriptors: every registered broker is fully described, credentials are refused
before they can reach an HTTP header, and each broker's trading day turns at its own midnight."""

from __future__ import annotations

import dataclasses
import inspect
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest

from brokers.alpaca.descriptor import DESCRIPTOR as ALPACA
from brokers.binance import constants as binance_constants
from brokers.binance.descriptor import DESCRIPTOR as BINANCE
from brokers.descriptor import BrokerDescriptor, Connections, InvalidCredentials
from brokers.kite.descriptor import DESCRIPTOR as KITE
from brokers.registry import DESCRIPTORS, SIM, UnsupportedBroker, descriptor
from replication.ids import client_order_id
from replication.ports import Broker
from schemas.api import AccountCreate
from schemas.common import BrokerName
from services.infra.brokerage import (
    BrokerNotSupported,
    CredentialsRejected,
    broker_day,
    validate_credentials,
)

VALID: dict[str, dict[str, Any]] = {
    "sim": {"key_id": "PKSIM1", "secret_key": "s3cret"},
    "alpaca": {"key_id": "PKALPACA", "secret_key": "s3cret/+=", "paper": False},
    "binance": {
        "api_key": "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A",
        "secret_key": "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j",
        "testnet": True,
        "quote_asset": "USDC",
        "watch_symbols": ["BTCUSDC", "ETHUSDC"],
    },
    "kite": {"api_key": "kiteapikey", "access_token": "t0ken", "exchange": "BSE", "product": "MIS"},
}
# The field of each broker's credentials that becomes (part of) an HTTP header.
HEADER_FIELD = {"sim": "secret_key", "alpaca": "key_id", "binance": "api_key", "kite": "api_key"}


def test_the_api_broker_enum_is_the_registry() -> None:
    assert {b.value for b in BrokerName} == set(DESCRIPTORS)
    assert AccountCreate.model_fields["broker"].annotation is BrokerName


@pytest.mark.parametrize("name", sorted(DESCRIPTORS))
def test_every_registered_broker_is_completely_described(name: str) -> None:
    described = DESCRIPTORS[name]
    assert isinstance(described, BrokerDescriptor) and described.name == name
    assert dataclasses.is_dataclass(described)
    with pytest.raises(dataclasses.FrozenInstanceError):
        described.name = "other"  # type: ignore[misc]
    credentials = described.parse_credentials(VALID[name])
    endpoints = described.endpoints(credentials)
    assert endpoints.trading.startswith(("https://", "http://"))
    assert described.trading_day(datetime(2026, 1, 1, 12, tzinfo=UTC)) == date(2026, 1, 1)
    assert described.limits.weight("place_order") >= 1
    # Our deterministic client order ids fit every broker's rules.
    assert described.client_order_id.accepts(client_order_id("order", "account", "open"))
    assert not described.client_order_id.accepts("x" * (described.client_order_id.max_length + 1))


@pytest.mark.parametrize("name", sorted(DESCRIPTORS))
async def test_the_adapter_constructor_builds_a_broker(name: str) -> None:
    described = DESCRIPTORS[name]
    async with httpx.AsyncClient(base_url="http://127.0.0.1:9") as http:
        adapter = described.connect(
            described.parse_credentials(VALID[name]), Connections(trading=http, data=http)
        )
        operations = [n for n in vars(Broker) if not n.startswith("_")]
        assert "place_order" in operations
        for operation in operations:
            assert inspect.iscoroutinefunction(getattr(adapter, operation)), operation


@pytest.mark.parametrize("name", sorted(DESCRIPTORS))
@pytest.mark.parametrize(
    "bad",
    [
        "key\r\nX-Injected: 1",
        "key\nmore",
        "key\r",
        "tab\there",
        "nul\x00",
        "del\x7f",
        "with space",
        "ключ",
        "",
        "k" * 257,
    ],
    ids=["crlf", "lf", "cr", "tab", "nul", "del", "space", "non-ascii", "empty", "too-long"],
)
def test_credentials_refuse_what_cannot_go_into_a_header(name: str, bad: str) -> None:
    field = HEADER_FIELD[name]
    with pytest.raises(InvalidCredentials) as refused:
        DESCRIPTORS[name].parse_credentials({**VALID[name], field: bad})
    assert str(refused.value).startswith(f"credentials.{field}")
    if bad:
        assert bad not in str(refused.value)  # the message never echoes a credential


@pytest.mark.parametrize(
    ("name", "credentials"),
    [
        ("sim", {"key_id": "a"}),  # missing
        ("sim", {"key_id": "a", "secret_key": "b", "paper": True}),  # unknown field
        ("alpaca", {"key_id": "a", "secret_key": "b", "paper": "yes"}),  # no coercion
        ("alpaca", {"key_id": 1234, "secret_key": "b"}),
        ("binance", {"api_key": "k", "secret_key": "s", "testnet": "yes"}),
        ("binance", {"api_key": "k", "secret_key": "s", "watch_symbols": ["BTC-USDT"]}),
        ("binance", {"api_key": "k", "secret_key": "s", "watch_symbols": "BTCUSDT"}),
        ("binance", {"api_key": "k", "secret_key": "s", "quote_asset": "usdt\n"}),
        ("binance", {"api_key": "k", "secret_key": "s", "watch_symbols": ["BTCUSDT"] * 201}),
        ("kite", {"key_id": "a", "secret_key": "b"}),  # Kite takes api_key and access_token
        ("kite", {"api_key": "k", "access_token": "t", "exchange": "N\r\nSE"}),
    ],
)
def test_credentials_are_strict(name: str, credentials: dict[str, Any]) -> None:
    with pytest.raises(InvalidCredentials):
        DESCRIPTORS[name].parse_credentials(credentials)
    with pytest.raises(CredentialsRejected):
        validate_credentials(name, credentials)


def test_validation_names_unsupported_brokers() -> None:
    with pytest.raises(BrokerNotSupported, match="broker 'nasdaq' is not supported"):
        validate_credentials("nasdaq", {})
    with pytest.raises(UnsupportedBroker):
        descriptor("nasdaq")
    for name in DESCRIPTORS:
        validate_credentials(name, VALID[name])  # raises on refusal


def test_defaults_and_base_urls() -> None:
    alpaca = ALPACA.parse_credentials({"key_id": "k", "secret_key": "s"})
    assert alpaca.paper is True
    assert ALPACA.endpoints(alpaca).trading == "https://paper-api.alpaca.markets"
    assert ALPACA.endpoints(alpaca).data == "https://data.alpaca.markets"
    live = ALPACA.parse_credentials({"key_id": "k", "secret_key": "s", "paper": False})
    assert ALPACA.endpoints(live).trading == "https://api.alpaca.markets"
    spot = BINANCE.parse_credentials({"api_key": "k", "secret_key": "s"})
    assert (spot.quote_asset, spot.watch_symbols) == ("USDT", [])
    assert BINANCE.endpoints(spot).trading == "https://api.binance.com"
    assert BINANCE.endpoints(BINANCE.parse_credentials(VALID["binance"])).trading == (
        "https://testnet.binance.vision"
    )
    kite = KITE.parse_credentials({"api_key": "k", "access_token": "t"})
    assert (kite.exchange, kite.product) == ("NSE", "CNC")
    assert KITE.endpoints(kite).trading == "https://api.kite.trade"
    sim = SIM.parse_credentials(VALID["sim"])
    assert SIM.endpoints(sim).data is None  # market data from the simulator itself


@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        # 19:00 UTC: already the 11th in Kolkata (UTC+5:30), still the 10th in New York and UTC.
        ("2026-03-10T19:00:00+00:00", {"kite": 11, "binance": 10, "alpaca": 10, "sim": 10}),
        # Kolkata's midnight is 18:30 UTC.
        ("2026-03-10T18:29:59+00:00", {"kite": 10, "binance": 10, "alpaca": 10, "sim": 10}),
        ("2026-03-10T18:30:00+00:00", {"kite": 11, "binance": 10, "alpaca": 10, "sim": 10}),
        # 02:00 UTC: a new day in UTC and Kolkata, still yesterday in New York (EDT, UTC-4).
        ("2026-03-11T02:00:00+00:00", {"kite": 11, "binance": 11, "alpaca": 10, "sim": 10}),
        ("2026-03-11T04:00:00+00:00", {"kite": 11, "binance": 11, "alpaca": 11, "sim": 11}),
        # Before the US switch to daylight time (8 March 2026), New York is UTC-5.
        ("2026-03-06T04:59:59+00:00", {"kite": 6, "binance": 6, "alpaca": 5, "sim": 5}),
    ],
)
def test_each_broker_trading_day_turns_at_its_own_midnight(
    instant: str, expected: dict[str, int]
) -> None:
    now = datetime.fromisoformat(instant)
    for name, day in expected.items():
        assert DESCRIPTORS[name].trading_day(now).day == day, name
        assert broker_day(name, now).day == day, name
    assert broker_day(None, now) == now.date()  # no broker account: UTC


def test_time_zones() -> None:
    assert {name: d.timezone for name, d in DESCRIPTORS.items()} == {
        "sim": "America/New_York",
        "alpaca": "America/New_York",
        "binance": "UTC",
        "kite": "Asia/Kolkata",
    }


def test_rate_limits() -> None:
    assert ALPACA.limits.per_account is not None and ALPACA.limits.per_host is None
    assert (ALPACA.limits.per_account.requests, ALPACA.limits.per_account.seconds) == (200, 60)
    assert KITE.limits.per_account is not None and KITE.limits.per_account.seconds == 1
    assert SIM.limits.per_account is None and SIM.limits.per_host is None  # configured
    # Binance: weights per IP, orders (only) per account.
    assert BINANCE.limits.per_host is not None and BINANCE.limits.per_host.requests == 6000
    assert BINANCE.limits.counts_for_account("place_order")
    assert not BINANCE.limits.counts_for_account("positions")
    assert ALPACA.limits.counts_for_account("positions")
    assert BINANCE.limits.weight("get_order_by_client_id") == 4
    assert BINANCE.limits.weight("replace_order") == 4 + 1
    # account weight 20, and the unfiltered ticker/price that values the balances weighs 4
    assert BINANCE.limits.weight("account") == 20 + 4
    assert BINANCE.limits.weight("an_operation_we_do_not_know") == 1
    assert ALPACA.limits.weight("account") == 1


def test_binance_weights_come_from_its_endpoint_table() -> None:
    for operation, requests in binance_constants.OPERATION_REQUESTS.items():
        assert all(r in binance_constants.REQUEST_WEIGHTS for r in requests), operation
        assert BINANCE.limits.weight(operation) == sum(
            binance_constants.REQUEST_WEIGHTS[r] for r in requests
        )


def test_an_unknown_time_zone_fails_when_described() -> None:
    with pytest.raises(Exception, match="No time zone"):
        dataclasses.replace(KITE, timezone="Asia/Nowhere")
