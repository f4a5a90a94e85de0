"""Run the Alembic migrations programmatically (launcher, tests): `upgrade(url)`."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

ROOT = Path(__file__).resolve().parents[3]


def upgrade(database_url: str, revision: str = "head") -> None:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    command.upgrade(config, revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    command.downgrade(config, revision)


def main() -> None:
    """`python -m services.infra.db.migrate`: the deployment's one-shot migration job."""
    from services.infra.settings import Settings, SettingsError

    url = Settings.from_env().database_url
    if not url:
        raise SettingsError("COPYTRADE_DATABASE_URL must be set")
    upgrade(url)


if __name__ == "__main__":
    main()
