# mlplatform: every target works from a fresh clone, offline (package registries only).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
DBT_VENV := $(VENV)/dbt
STATE := $(or $(MLPLATFORM_STATE_DIR),$(CURDIR)/state)

export PATH := $(CURDIR)/$(BIN):$(PATH)

# Telemetry off for every tool; Dagster state under the project's state folder.
export DAGSTER_HOME := $(STATE)/dagster
export MLPLATFORM_DUCKDB_PATH ?= $(STATE)/warehouse.duckdb
export MLPLATFORM_FEAST_DATA_DIR ?= $(STATE)/feast/data
export DBT_SEND_ANONYMOUS_USAGE_STATS := False
export FEAST_USAGE := False
export GX_ANALYTICS_ENABLED := False
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1

.PHONY: env demo test dev serve lint typecheck security check-defs benchmark clean

MANIFEST := dbt_project/target/manifest.json
DBT_SOURCES := $(shell find dbt_project \( -path dbt_project/target -o -path dbt_project/logs \) -prune \
	-o \( -name '*.sql' -o -name '*.yml' \) -print)

# The `feast` CLI's feature_repo/feature_store.yaml is written from the code that configures Feast for Dagster
# (same registry, stores and paths), for the state folder in force: it is cheap, so always.
env: $(VENV)/.installed $(DBT_VENV)/.installed $(DAGSTER_HOME)/dagster.yaml $(MANIFEST)
	@$(BIN)/python -m mlplatform.features.cli_config feature_repo

# The lock pins every package, dependencies included: installed as it is (no resolver), then `pip check`
# proves nothing is missing. pip byte-compiles every module as it installs it: Python reads those .pyc files
# even where PYTHONDONTWRITEBYTECODE forbids writing them (this machine, many CI images and containers), and
# without them every process compiled each module it imported again, about half of each import's time.
$(VENV)/.installed: requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --no-deps -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/pip check
	@touch $@

# dbt in an environment of its own, run as a command (dagster-dbt does not need dbt-core installed beside
# it): the code location loads without importing dbt, and dbt's pins never constrain the platform's.
$(DBT_VENV)/.installed: requirements-dbt.lock
	@test -x $(DBT_VENV)/bin/python || $(PYTHON) -m venv $(DBT_VENV)
	$(DBT_VENV)/bin/pip install --quiet --no-deps -r requirements-dbt.lock
	$(DBT_VENV)/bin/pip check
	@touch $@

# dagster-dbt loads the dbt manifest at import time: parse the project once, here.
$(MANIFEST): $(VENV)/.installed $(DBT_VENV)/.installed $(DBT_SOURCES)
	$(BIN)/dagster-dbt project prepare-and-package --file mlplatform/transform/project.py
	@touch $@

$(DAGSTER_HOME)/dagster.yaml: dagster.local.yaml
	@mkdir -p $(DAGSTER_HOME)
	cp dagster.local.yaml $@

demo: env
	$(BIN)/mlplatform demo

# The prod-profile tests and the dagster-daemon loop test mostly wait on their services (Postgres, Redis,
# an MLflow server, a Dagster daemon and its ticks), so each runs beside the rest of the suite; so do
# tests/training, the longest package, and the README's blocks (commands in processes of their own), on the
# core the others leave idle once they are done. All must pass. They share one built demo state
# (MLPLATFORM_TEST_BUILT_STATE: the first to need it builds it, the others wait for it once they have run
# their tests that do not need it), unless you point that variable at your own. Paths joined by `+` run in
# one process, one after the other: tests/transform, which builds its own small states, follows the README's
# blocks, the shortest of them.
BESIDE := tests/prod tests/monitoring/test_daemon_loop.py tests/training tests/test_readme.py+tests/transform
test: env
	@shared=$$(mktemp -d); export MLPLATFORM_TEST_BUILT_STATE=$${MLPLATFORM_TEST_BUILT_STATE:-$$shared/built}; \
	pids=""; logs=""; for t in $(BESIDE); do log=$$(mktemp); logs="$$logs $$log"; \
	  $(BIN)/pytest $${t//+/ } > $$log 2>&1 & pids="$$pids $$!"; done; \
	$(BIN)/pytest $(addprefix --ignore=,$(subst +, ,$(BESIDE))); status=$$?; \
	for pid in $$pids; do wait $$pid || status=1; done; \
	for log in $$logs; do echo "--- run beside the suite ---"; cat $$log; rm -f $$log; done; \
	rm -rf $$shared; exit $$status

# `dagster dev` notes that `dg dev` (dagster-dg-cli, not installed) supersedes it: that one notice is silenced
dev: env
	PYTHONWARNINGS='ignore:Function `dev_command` is superseded' $(BIN)/dagster dev -h 127.0.0.1 -p 3000 -w workspace.yaml

serve: env
	$(BIN)/mlplatform serve --host 127.0.0.1 --port 8000

lint: env
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy and bandit read their settings from pyproject.toml ([tool.mypy], [tool.bandit])
typecheck: env
	$(BIN)/mypy

security: env
	$(BIN)/bandit -c pyproject.toml -r mlplatform feature_repo .ci

check-defs: env
	$(BIN)/dagster definitions validate -w workspace.yaml

# one after another: they share the 2 cores, and a busy machine distorts every figure
benchmark: env
	for b in ingestion_dbt features training serving loop daily_cost; do PYTHONPATH=$(CURDIR) $(BIN)/python benchmarks/$$b.py || exit 1; done

clean:
	rm -rf $(STATE) dbt_project/target dbt_project/logs
