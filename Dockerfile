# syntax=docker/dockerfile:1
# One image for every role; the command selects it:
#   python -m services.api                  ingest API + dashboard (COPYTRADE_API_WORKERS)
#   python -m services.worker.replicator    replicator
#   python -m services.worker.sweeper       sweeper (also the lag/backlog/dead-letter gauges)
#   python -m services.worker.poller        broker poller
#   python -m services.worker.notifier      webhook deliveries
#   python -m services.infra.db.migrate     migrations (a one-shot job)
#   python -m brokers.sim                   the broker simulator (demos, load tests)
# Dependencies come from requirements.lock only (exact versions, sha256 of every wheel), so a
# build from the same commit installs the same bytes. Regenerate it with scripts/lock.py.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
COPY requirements.lock /tmp/requirements.lock
# Wheels only: nothing is compiled, so no compiler is needed even here.
RUN /opt/venv/bin/pip install --require-hashes --no-deps --only-binary=:all: \
        -r /tmp/requirements.lock
WORKDIR /app
COPY alembic.ini pyproject.toml ./
COPY migrations ./migrations
COPY schemas ./schemas
COPY replication ./replication
COPY brokers ./brokers
COPY services ./services
RUN /opt/venv/bin/python -m compileall -q /app

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 copytrade \
    && useradd --system --uid 10001 --gid copytrade --home-dir /app --shell /usr/sbin/nologin copytrade
COPY --from=build /opt/venv /opt/venv
COPY --from=build --chown=root:root /app /app
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    COPYTRADE_ENVIRONMENT=production \
    COPYTRADE_API_HOST=0.0.0.0 \
    COPYTRADE_METRICS_HOST=0.0.0.0 \
    COPYTRADE_METRICS_PORT=9100 \
    COPYTRADE_DATA_DIR=/tmp/copytrade \
    COPYTRADE_LOG_FORMAT=json
USER 10001:10001
EXPOSE 8000 9100
ENTRYPOINT ["python", "-m"]
CMD ["services.api"]
