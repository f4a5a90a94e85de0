"""The async SQLAlchemy engine (asyncpg), with explicit pool limits."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def make_engine(database_url: str, *, pool_size: int = 10, max_overflow: int = 10) -> AsyncEngine:
    return create_async_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=10,
        pool_recycle=1800,
        # Errors never echo bound values (emails, labels) into logs or tracebacks.
        hide_parameters=True,
        connect_args={"command_timeout": 30, "server_settings": {"application_name": "copytrade"}},
    )
