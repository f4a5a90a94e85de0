"""Ports for a cluster's nodes are distinct even when the kernel hands one out twice (a node's
client port once equalled another node's route port: that node never started)."""

from __future__ import annotations

import pytest

from services.dev import embedded


def test_free_ports_are_distinct_when_the_kernel_repeats_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handed_out = iter([47443, 47443, 49051, 47443, 60803, 49051, 58499])
    monkeypatch.setattr(embedded, "free_port", lambda: next(handed_out))
    assert embedded.free_ports(4) == [47443, 49051, 60803, 58499]


def test_free_ports_are_bindable() -> None:
    ports = embedded.free_ports(6)
    assert len(set(ports)) == 6 and all(1024 < port < 65536 for port in ports)
