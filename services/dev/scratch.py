"""A PostgreSQL of its own for the measuring scripts (scripts/*_cost.py)."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from services.dev.embedded import start_postgres


@contextlib.contextmanager
def scratch_postgres(migrated: bool = True) -> Iterator[str]:
    """A PostgreSQL of its own in a temporary directory, migrated unless told otherwise; its URL.
    For the measuring scripts (scripts/*_cost.py, pre_ping), stopped and removed afterwards."""
    from services.infra.db import migrate  # alembic: only for those who ask for the schema

    with tempfile.TemporaryDirectory() as directory:
        server = start_postgres(Path(directory) / "pg")
        try:
            if migrated:
                migrate.upgrade(server.url)
            yield server.url
        finally:
            server.stop()
