# PV Trace — the two commands of the quick start are `make demo` and `make test`.
# Both set everything up from scratch: a private uv (from PyPI) in .tools/, the locked
# environment in .venv/, a Dagster home with telemetry off.

SHELL := /bin/bash
PYTHON ?= python3
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin

export UV_PYTHON_DOWNLOADS := never
export UV_COMPILE_BYTECODE := 1
export UV_LINK_MODE := copy
export DAGSTER_HOME := $(CURDIR)/.dagster_home

INBOX ?= inbox
OUTPUT ?= output
WAREHOUSE ?= $(OUTPUT)/pvtrace.duckdb
SEED ?= 42
SCALE ?= 1.0

.PHONY: setup demo test test-fast ui bench clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check "uv==0.13.9"

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --python $(PYTHON)
	touch $@

$(DAGSTER_HOME)/dagster.yaml:
	mkdir -p $(DAGSTER_HOME)
	printf 'telemetry:\n  enabled: false\n' > $@

setup: $(VENV)/.synced $(DAGSTER_HOME)/dagster.yaml

demo: setup
	$(BIN)/pvtrace demo --inbox $(INBOX) --warehouse $(WAREHOUSE) --output $(OUTPUT) --seed $(SEED) --scale $(SCALE)

test: setup
	$(BIN)/pytest -n 2 --durations=15

test-fast: setup
	$(BIN)/pytest -n 2 -m "not e2e"

ui: setup
	@echo "Dagster UI on http://127.0.0.1:3000 (warehouse $(WAREHOUSE), inbox $(INBOX))"
	PVTRACE_INBOX=$(INBOX) PVTRACE_WAREHOUSE=$(WAREHOUSE) PVTRACE_OUTPUT=$(OUTPUT) \
		$(BIN)/dagster dev -m assets.definitions -h 127.0.0.1 -p 3000

bench: setup
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b; done

clean:
	rm -rf $(OUTPUT) $(INBOX) .pytest_cache $(DAGSTER_HOME)
