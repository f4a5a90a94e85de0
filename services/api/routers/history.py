"""History: GET /v1/copies (a follower's copies) and GET /v1/orders (a master's orders), newest
first, with `since`/`until`, cursor pages and CSV export.

Old clients keep the plain JSON list (API.md); when more rows exist, the answer says where the
next page is in a `Link: <…>; rel="next"` header and `X-Next-Cursor`. A request with a `cursor`
parameter (empty for the first page) gets the envelope `{items, next_cursor}` instead.
`Accept: text/csv` streams every row of the window (from `cursor` on, if given) as CSV."""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from schemas.api import CopyOut, OrderOut
from schemas.common import Rfc3339
from schemas.reports import CopyPage, OrderPage
from services.api.deps import Container, Deps, FollowerAuth, MasterAuth
from services.api.errors import Unprocessable
from services.api.views import copy_out, order_out
from services.infra.db.repositories.history import PageKey, Window, copies_page, orders_page
from services.infra.db.repositories.orders import orders_progress

router = APIRouter()

Fetch = Callable[[Window], Awaitable[tuple[list[BaseModel], PageKey | None]]]
CSV_BATCH = 500


class InvalidCursor(Unprocessable):
    code, default_message = "invalid_cursor", "the cursor is not one this API gave out"


def encode_cursor(key: PageKey) -> str:
    raw = f"{key.created_at.isoformat()}|{key.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> PageKey | None:
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, _, ident = raw.partition("|")
        key = PageKey(datetime.fromisoformat(when), UUID(ident))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidCursor() from None
    if key.created_at.tzinfo is None:
        raise InvalidCursor()
    return key


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    return json.dumps(value, separators=(",", ":")) if isinstance(value, dict | list) else value


async def _csv_rows(fetch: Fetch, window: Window, fields: list[str]) -> AsyncIterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(fields)
    after: PageKey | None = window.after
    while True:
        items, after = await fetch(Window(window.since, window.until, after, CSV_BATCH))
        for item in items:
            data = item.model_dump(mode="json")
            writer.writerow([_csv_cell(data.get(name)) for name in fields])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        if after is None:
            return


def _next_link(request: Request, cursor: str) -> str:
    return f'<{request.url.include_query_params(cursor=cursor)}>; rel="next"'


async def answer(
    request: Request,
    response: Response,
    fetch: Fetch,
    window: Window,
    cursor: str | None,
    model: type[BaseModel],
) -> Any:
    """CSV, the envelope (a cursor was given) or the plain list with Link headers."""
    if "text/csv" in request.headers.get("accept", ""):
        fields = [name for name in model.model_fields if name != "items"]
        return StreamingResponse(
            _csv_rows(fetch, window, fields),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="export.csv"'},
        )
    items, last = await fetch(window)
    next_cursor = encode_cursor(last) if last is not None else None
    if cursor is not None:
        return {"items": items, "next_cursor": next_cursor}
    if next_cursor is not None:
        response.headers["Link"] = _next_link(request, next_cursor)
        response.headers["X-Next-Cursor"] = next_cursor
    return items


def _page(rows: Sequence[Any], limit: int) -> tuple[Sequence[Any], PageKey | None]:
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, PageKey(rows[-1].created_at, rows[-1].id)


def copies_fetch(c: Container, follower_id: str, order_id: str | None) -> Fetch:
    async def fetch(window: Window) -> tuple[list[BaseModel], PageKey | None]:
        async with c.engine.connect() as conn:
            rows, last = _page(await copies_page(conn, follower_id, order_id, window), window.limit)
        return [copy_out(row) for row in rows], last

    return fetch


def orders_fetch(c: Container, master_id: str) -> Fetch:
    async def fetch(window: Window) -> tuple[list[BaseModel], PageKey | None]:
        async with c.engine.connect() as conn:
            rows, last = _page(await orders_page(conn, master_id, window), window.limit)
            progress = await orders_progress(conn, [str(row.id) for row in rows])
        return [order_out(row, progress[str(row.id)]) for row in rows], last

    return fetch


Since = Annotated[Rfc3339 | None, Query(description="created at or after (RFC 3339)")]
Until = Annotated[Rfc3339 | None, Query(description="created before (RFC 3339)")]
Cursor = Annotated[str | None, Query(max_length=200, description="opaque; empty: first page")]


@router.get("/v1/copies", response_model=list[CopyOut] | CopyPage)
async def copies(
    request: Request,
    response: Response,
    user: FollowerAuth,
    c: Deps,
    order_id: UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    since: Since = None,
    until: Until = None,
    cursor: Cursor = None,
) -> Any:
    """The follower's copies, newest first."""
    window = Window(since, until, decode_cursor(cursor or ""), limit)
    fetch = copies_fetch(c, user.user_id, str(order_id) if order_id else None)
    return await answer(request, response, fetch, window, cursor, CopyOut)


@router.get("/v1/orders", response_model=list[OrderOut] | OrderPage)
async def orders(
    request: Request,
    response: Response,
    user: MasterAuth,
    c: Deps,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    since: Since = None,
    until: Until = None,
    cursor: Cursor = None,
) -> Any:
    """The master's orders with their fan-out progress, newest first."""
    window = Window(since, until, decode_cursor(cursor or ""), limit)
    return await answer(request, response, orders_fetch(c, user.user_id), window, cursor, OrderOut)
