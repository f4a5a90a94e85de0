"""Logging setup: one line per event, no secrets (credentials are never passed to a logger)."""

from __future__ import annotations

import logging
import os


def setup_logging() -> None:
    level = os.environ.get("COPYTRADE_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s[%(process)d] %(message)s",
    )
    # httpx logs every request URL at INFO; keep it quiet.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
