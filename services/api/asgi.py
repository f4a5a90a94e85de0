"""ASGI entry of the ingest API."""

import os

from services.api.app import build_app
from services.infra.lifetime import exit_with_parent
from services.infra.logs import setup_logging
from services.infra.metrics import forget_dead_processes
from services.infra.settings import Settings

setup_logging()
exit_with_parent()  # an API worker dies with the server's main process (never an orphan)
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # a replaced worker's gauges leave with it
    forget_dead_processes(os.environ["PROMETHEUS_MULTIPROC_DIR"])
app = build_app(Settings.from_env())
