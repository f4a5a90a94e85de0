"""Logging: one JSON object per line (structlog), carrying the ids of what is being handled.

Every record, from our loggers and from libraries alike (stdlib `logging` goes through the same
formatter), is rendered with the context bound in the current task: `order_id`, `shard`,
`leg_id`, `account_id`, `request_id`. Bind them where an order, a leg or a request is handled:

    with log_context(order_id=order.order_id):
        ...   # every line logged in here, in this task and the tasks it starts, carries it

`COPYTRADE_LOG_FORMAT=console` prints the same as readable lines; `COPYTRADE_LOG_LEVEL` sets
the level. No secrets: credentials are never passed to a logger.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog

CONTEXT_KEYS = ("request_id", "order_id", "shard", "leg_id", "account_id")


def _processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.CallsiteParameterAdder(
            {structlog.processors.CallsiteParameter.PROCESS}
        ),
    ]


_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)")
_SECRET = re.compile(
    r"(?i)(\"?(?:password|secret_key|secret|api_secret|access_token|key_id)\"?\s*[:=]\s*)"
    r"(\"[^\"]*\"|'[^']*'|[^\s,}]+)"
)


def redact(text: str) -> str:
    """Emails keep their first character and domain; passwords and credential values go."""
    text = _EMAIL.sub(r"\1***@\2", text)
    return _SECRET.sub(r"\1***", text)


class RedactingFormatter(structlog.stdlib.ProcessorFormatter):
    """The last guard: whatever a message or a traceback carries, no submitted email, password
    or credential leaves in full (the first guards: validation refuses what would fail in SQL,
    and the engine hides bound parameters)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def formatter(fmt: str = "json") -> structlog.stdlib.ProcessorFormatter:
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False)
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    return RedactingFormatter(
        foreign_pre_chain=_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )


def setup_logging() -> None:
    level = os.environ.get("COPYTRADE_LOG_LEVEL", "INFO").upper()
    fmt = os.environ.get("COPYTRADE_LOG_FORMAT", "json")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    structlog.configure(
        processors=[*_processors(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    # httpx logs every request URL at INFO; keep it quiet.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)


@contextmanager
def log_context(**ids: object) -> Iterator[None]:
    """Bind ids (None values are left out) to every log line of this block and of the tasks
    it starts; the previous values come back on the way out."""
    values = {key: str(value) for key, value in ids.items() if value is not None}
    with structlog.contextvars.bound_contextvars(**values):
        yield


def bind_log_context(**ids: object) -> None:
    """Bind ids for the rest of the current task (a request handler, a leg's coroutine)."""
    structlog.contextvars.bind_contextvars(
        **{key: str(value) for key, value in ids.items() if value is not None}
    )
