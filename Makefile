# The two commands that matter: `make run` and `make test`. Both bootstrap .venv themselves.
.PHONY: run test bench transports lint typecheck venv clean

VENV := .venv
PY := $(VENV)/bin/python

venv:
	@./scripts/bootstrap.sh

run: venv
	@$(PY) -m services.launcher

test: venv
	@./scripts/ensure-chromium.sh
	@$(PY) -m ruff check .
	@$(PY) -m mypy replication schemas brokers services
	@$(PY) -m pytest -q -p no:cacheprovider

bench:
	@EXTRAS=test,bench ./scripts/bootstrap.sh
	@$(PY) -m loadtest.bench

transports:
	@EXTRAS=test,bench ./scripts/bootstrap.sh
	@$(PY) -m loadtest.transports

lint: venv
	@$(PY) -m ruff check .

typecheck: venv
	@$(PY) -m mypy replication schemas brokers services

clean:
	rm -rf .data .pytest_cache .mypy_cache .ruff_cache test-artifacts bench-results
