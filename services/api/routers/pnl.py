"""Profit and loss of copies: GET /v1/pnl (followers: per subscription and symbol; masters:
aggregates over their followers, no identities)."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

from fastapi import APIRouter

from replication.pnl import total
from schemas.common import Rfc3339
from schemas.reports import PnlOut, PnlPosition, PnlTotals
from services.api.deps import Auth, Container, Deps, require
from services.api.errors import Forbidden, MasterNotFound
from services.app.pnl import Marks, PnlLine, follower_pnl, master_pnl
from services.infra.db.repositories.subscriptions import subscriptions_of_follower

router = APIRouter()


def pnl_position(line: PnlLine) -> PnlPosition:
    return PnlPosition(
        symbol=line.symbol,
        subscription_id=line.subscription_id,
        master_id=line.master_id,
        followers=line.followers,
        position=line.pnl.position,
        average_cost=line.pnl.average_cost,
        realized=line.pnl.realized,
        unrealized=line.pnl.unrealized,
        fees=line.pnl.fees,
        mark_price=line.mark,
        fills=line.pnl.fills,
    )


async def _follows(c: Container, follower_id: str, master_id: str) -> bool:
    async with c.engine.connect() as conn:
        subscriptions = await subscriptions_of_follower(conn, follower_id)
    return any(str(s.master_id) == master_id for s in subscriptions)


@router.get("/v1/pnl", response_model=PnlOut)
async def pnl(
    user: Auth,
    c: Deps,
    master_id: UUID | None = None,
    since: Rfc3339 | None = None,
    until: Rfc3339 | None = None,
) -> PnlOut:
    """Realized P&L over [since, until) (average cost over every earlier fill), the position
    at `until` marked at the broker's last price, fees where the broker reports them."""
    require(user, "follower", "master")
    marks = Marks(c.factory, c.cipher.decrypt)
    if user.role == "master":
        if master_id is not None and str(master_id) != user.user_id:
            raise Forbidden("a master sees only its own followers' aggregate")
        lines = await master_pnl(c.engine, marks, user.user_id, since, until)
    else:
        master = str(master_id) if master_id else None
        lines = await follower_pnl(c.engine, marks, user.user_id, master, since, until)
        if master is not None and not lines and not await _follows(c, user.user_id, master):
            # Neither copies of that master nor a subscription to it: not told whether it
            # exists (tenant isolation), as for any other tenant's id.
            raise MasterNotFound()
    return PnlOut(
        role="master" if user.role == "master" else "follower",
        since=since,
        until=until,
        positions=[pnl_position(line) for line in lines],
        totals=PnlTotals(
            realized=sum((line.pnl.realized for line in lines), Decimal(0)),
            unrealized=total([line.pnl.unrealized for line in lines]),
            fees=total([line.pnl.fees for line in lines]),
        ),
    )
