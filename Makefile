# The two commands that matter: `make run` and `make test`. Both bootstrap .venv themselves.
.PHONY: run cluster cluster-test chaos test bench profile profile-ingest transports loadtest loadtest-ingest loadtest-ceiling lint typecheck venv clean

VENV := .venv
PY := $(VENV)/bin/python

venv:
	@./scripts/bootstrap.sh

run: venv
	@$(PY) -m services.dev.launcher

# `make run` on a 3-node NATS JetStream cluster (routes between three nats-server processes
# from the same wheel; streams R3). The same as COPYTRADE_NATS_CLUSTER=3 make run.
cluster: venv
	@COPYTRADE_NATS_CLUSTER=3 $(PY) -m services.dev.launcher

# The cluster tests at full size (make test runs them with 20 followers and 1 + 3 orders).
CLUSTER_FOLLOWERS ?= 200
CLUSTER_ORDERS ?= 10
cluster-test: venv
	@COPYTRADE_CLUSTER_FOLLOWERS=$(CLUSTER_FOLLOWERS) COPYTRADE_CLUSTER_ORDERS=$(CLUSTER_ORDERS) \
		$(PY) -m pytest -q -p no:cacheprovider -s tests/e2e/test_cluster.py

# The audit reads an OSV database on disk (COPYTRADE_AUDIT_DB or .audit-db/): see README Security.
test: venv
	@./scripts/ensure-chromium.sh
	@$(PY) -m ruff check .
	@$(VENV)/bin/lint-imports --no-cache
	@$(PY) scripts/audit.py
	@$(PY) -m mypy replication schemas brokers services clients
	@$(PY) -m pytest -q -p no:cacheprovider

# The chaos suite at full size (make test runs it with 20 followers and 2 orders per fault).
CHAOS_FOLLOWERS ?= 100
CHAOS_ORDERS ?= 10
chaos: venv
	@COPYTRADE_CHAOS_FULL=1 COPYTRADE_CHAOS_FOLLOWERS=$(CHAOS_FOLLOWERS) \
		COPYTRADE_CHAOS_ORDERS=$(CHAOS_ORDERS) $(PY) -m pytest -q -p no:cacheprovider -s tests/chaos

# Smaller runs: make bench BENCH_ARGS='--followers 20 --orders 5 --workers 1 2'
bench:
	@EXTRAS=test,bench ./scripts/bootstrap.sh
	@$(PY) -m loadtest.bench $(BENCH_ARGS)

# The replicators' CPU, sampled by py-spy during a bench run (the measured orders only).
profile:
	@EXTRAS=test,bench ./scripts/bootstrap.sh
	@rm -rf bench-results/profile
	@$(PY) -m loadtest.bench --followers 500 --orders 20 --workers 1 \
		--profile bench-results/profile $(BENCH_ARGS)
	@$(PY) scripts/profile_summary.py bench-results/profile/*.txt

# The ingest API's process, sampled by py-spy while 8 clients post orders to a stack of its own.
profile-ingest:
	@EXTRAS=test,bench ./scripts/bootstrap.sh
	@rm -rf bench-results/ingest-profile
	@$(PY) -m loadtest.ingest --launch --workers 1 --concurrency 8 --seconds 15 \
		--profile bench-results/ingest-profile
	@$(PY) scripts/profile_summary.py bench-results/ingest-profile/*.txt

transports:
	@EXTRAS=test,bench ./scripts/bootstrap.sh
	@$(PY) -m loadtest.transports $(TRANSPORTS_ARGS)

# Against a running `make run` (another terminal); reports land in bench-results/.
loadtest:
	@EXTRAS=test,bench ./scripts/bootstrap.sh
	@mkdir -p bench-results
	@$(PY) -m locust -f loadtest/locustfile.py --headless -u 10 -r 10 -t 60s \
		--host http://127.0.0.1:8000 MasterUser FollowerUser \
		--csv bench-results/locust --html bench-results/locust.html

# INGEST_USER=HealthzUser INGEST_REPORT=locust-ceiling is `make loadtest-ceiling`.
INGEST_USER ?= IngestUser
INGEST_REPORT ?= locust-ingest
loadtest-ingest:
	@EXTRAS=test,bench ./scripts/bootstrap.sh
	@mkdir -p bench-results
	@$(PY) -m locust -f loadtest/locustfile.py --headless -u 64 -r 16 -t 30s \
		--host http://127.0.0.1:8000 $(INGEST_USER) \
		--csv bench-results/$(INGEST_REPORT) --html bench-results/$(INGEST_REPORT).html

# What loadtest-ingest's client, server and framework reach with a route that does nothing.
loadtest-ceiling:
	@$(MAKE) --no-print-directory loadtest-ingest INGEST_USER=HealthzUser INGEST_REPORT=locust-ceiling

lint: venv
	@$(PY) -m ruff check .
	@$(VENV)/bin/lint-imports --no-cache

typecheck: venv
	@$(PY) -m mypy replication schemas brokers services clients

clean:
	rm -rf .data .pytest_cache .mypy_cache .ruff_cache test-artifacts bench-results
