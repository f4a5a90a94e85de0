"""ASGI entry of the ingest API."""

from services.api.app import build_app
from services.infra.lifetime import exit_with_parent
from services.infra.logs import setup_logging
from services.infra.settings import Settings

setup_logging()
exit_with_parent()  # an API worker dies with the server's main process (never an orphan)
app = build_app(Settings.from_env())
