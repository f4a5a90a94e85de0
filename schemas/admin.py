"""Bodies of the admin listings (GET /v1/admin/legs, GET /v1/admin/orders/dead-lettered) and of
the broker catalogue (GET /v1/brokers)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from schemas.api import CopyOut, OrderOut


class StuckKind(StrEnum):
    FAILED = "failed"  # failed or expired: what POST /v1/copies/{leg_id}/retry takes
    IN_DOUBT = "in_doubt"  # submitting, unknown or retrying: the sweeper is on it


class AdminLegOut(CopyOut):
    """A follower leg as an admin sees it: the copy, and whose it is."""

    follower_id: str | None


class DeadLetterOut(OrderOut):
    """A dead-lettered master order, and why its deliveries ran out."""

    dead_letter_reason: str


class BrokerOut(BaseModel):
    """A broker an account can be linked at, and the JSON schema of its `credentials`."""

    name: str
    credentials: dict[str, Any]
