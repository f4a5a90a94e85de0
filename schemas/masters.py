"""Bodies of a master's consent routes (API.md v1 additions): copy access, invites, followers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from schemas.common import Strict, StrictInt

CopyAccess = Literal["invite", "open", "closed"]
DisplayName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")]


CopyOn = Literal["submitted", "accepted"]


class MasterPatch(Strict):
    copy_access: CopyAccess | None = None
    display_name: DisplayName | None = None
    copy_on: CopyOn | None = None


class MasterOut(BaseModel):
    master_id: str
    copy_access: CopyAccess
    display_name: str | None
    copy_on: CopyOn = "submitted"


class InviteCreate(Strict):
    max_uses: Annotated[StrictInt, Field(ge=1, le=100_000)] | None = None
    expires_in_s: Annotated[StrictInt, Field(ge=60, le=90 * 86_400)] = 7 * 86_400


class InviteOut(BaseModel):
    invite_code: str
    expires_at: datetime


class FollowerOut(BaseModel):
    """A subscription to the master: no follower identity, account or copy settings."""

    subscription_id: str
    paused: bool
    created_at: datetime
    ending_at: datetime | None
