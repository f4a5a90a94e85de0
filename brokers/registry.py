"""Every broker the service can trade at, by name: the one list services iterate.

Adding a broker: a package `brokers/<name>/` with its `descriptor.py`, one line below, and its
name in `schemas.common.BrokerName` (the API's enum; a test keeps the two equal)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from brokers.alpaca.client import AlpacaBroker
from brokers.alpaca.descriptor import DESCRIPTOR as ALPACA
from brokers.binance.descriptor import DESCRIPTOR as BINANCE
from brokers.descriptor import BrokerDescriptor
from brokers.kite.descriptor import DESCRIPTOR as KITE
from brokers.sim.descriptor import descriptor as sim_descriptor

SIM = sim_descriptor(alpaca_adapter=AlpacaBroker)

DESCRIPTORS: Mapping[str, BrokerDescriptor[Any]] = MappingProxyType(
    {d.name: d for d in (SIM, ALPACA, BINANCE, KITE)}
)


class UnsupportedBroker(KeyError):
    pass


def descriptor(name: str) -> BrokerDescriptor[Any]:
    """The descriptor of broker `name`; UnsupportedBroker when there is none."""
    try:
        return DESCRIPTORS[name]
    except KeyError:
        raise UnsupportedBroker(name) from None
