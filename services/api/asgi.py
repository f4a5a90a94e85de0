"""ASGI entry of the ingest API."""

from services.api.app import build_app
from services.infra.logs import setup_logging
from services.infra.settings import Settings

setup_logging()
app = build_app(Settings.from_env())
