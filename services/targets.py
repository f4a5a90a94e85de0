"""Turn subscription rows into planner targets and broker adapters (credentials decrypted here)."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from replication.model import FollowerTarget
from replication.ports import Broker
from schemas.copy_settings import Caps, Filters, Sizing
from services.brokerage import BrokerFactory
from services.crypto import CredentialCipher

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


def broker_for_row(factory: BrokerFactory, cipher: CredentialCipher, row: dict[str, Any]) -> Broker:
    account_id = str(row["account_id"])
    return factory.for_account(
        account_id, row["broker"], cipher.decrypt(account_id, row["credentials"])
    )
