"""Logging setup: one line per event, no secrets (credentials are never passed to a logger)."""

from __future__ import annotations

import logging
import os
import re

FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d] %(message)s"
_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)")
_SECRET = re.compile(
    r"(?i)(\"?(?:password|secret_key|secret|api_secret|access_token|key_id)\"?\s*[:=]\s*)"
    r"(\"[^\"]*\"|'[^']*'|[^\s,}]+)"
)


def redact(text: str) -> str:
    """Emails keep their first character and domain; passwords and credential values go."""
    text = _EMAIL.sub(r"\1***@\2", text)
    return _SECRET.sub(r"\1***", text)


class RedactingFormatter(logging.Formatter):
    """The last guard: whatever a message or a traceback carries, no submitted email, password
    or credential leaves in full (the first guards: validation refuses what would fail in SQL,
    and the engine hides bound parameters)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup_logging() -> None:
    level = os.environ.get("COPYTRADE_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=level, format=FORMAT)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(RedactingFormatter(FORMAT))
    # httpx logs every request URL at INFO; keep it quiet.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
