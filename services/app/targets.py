"""Turn subscription rows into planner targets and broker adapters (credentials decrypted here)."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from replication.model import FollowerTarget
from replication.ports import Broker
from schemas.copy_settings import Caps, Filters, Sizing
from services.infra.brokerage import BrokerFactory
from services.infra.crypto import CredentialCipher

_SIZING: TypeAdapter[Any] = TypeAdapter(Sizing)


def target_from_row(row: dict[str, Any]) -> FollowerTarget:
    return FollowerTarget(
        subscription_id=str(row["subscription_id"]),
        follower_id=str(row["follower_id"]),
        account_id=str(row["account_id"]),
        broker=row["broker"],
        sizing=_SIZING.validate_python(row["sizing"]),
        caps=Caps.model_validate(row["caps"]),
        filters=Filters.model_validate(row["filters"]),
        paused=bool(row["paused"]),
        account_halted=bool(row["account_halted"]),
    )


class TargetCache:
    """Parsed targets by subscription, reused while the subscription and its account are
    unchanged (both rows carry updated_at): no per-order re-validation of copy settings."""

    def __init__(self) -> None:
        self._by_subscription: dict[str, tuple[tuple[Any, Any], FollowerTarget]] = {}

    def target(self, row: dict[str, Any]) -> FollowerTarget:
        key = str(row["subscription_id"])
        version = (row.get("subscription_version"), row.get("account_version"))
        cached = self._by_subscription.get(key)
        if cached is not None and cached[0] == version and None not in version:
            return cached[1]
        parsed = target_from_row(row)
        self._by_subscription[key] = (version, parsed)
        return parsed


def broker_for_row(factory: BrokerFactory, cipher: CredentialCipher, row: dict[str, Any]) -> Broker:
    return factory.for_sealed(
        str(row["account_id"]), row["broker"], row["credentials"], cipher.decrypt
    )
