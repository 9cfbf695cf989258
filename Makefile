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

.PHONY: setup system-deps demo test test-fast lint format ui bench clean

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

# Debian packages the Python stack cannot bring: CJK fonts for the bilingual NMPA/PMDA PDFs,
# poppler-utils (pdftotext) for the PDF tests, chromium for the dashboard's browser tests,
# a Java 17 runtime for the Spark engine (PySpark 4 runs on Java 17 or newer).
# Installed only when missing and when running as root on Debian (CI); otherwise it says what
# is missing and the steps that need them fail with their own clear message.
DEB_PACKAGES ?= fonts-noto-cjk poppler-utils chromium openjdk-17-jre-headless
system-deps:
	@if ! command -v dpkg-query >/dev/null 2>&1; then \
		echo "system-deps: not a Debian system; install $(DEB_PACKAGES) (or equivalents) yourself" >&2; exit 0; fi; \
	missing=""; for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "system-deps: installing$$missing"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	else \
		echo "system-deps: missing Debian packages:$$missing — run as root: apt-get install -y$$missing" >&2; fi

demo: setup system-deps
	$(BIN)/pvtrace demo --inbox $(INBOX) --warehouse $(WAREHOUSE) --output $(OUTPUT) --seed $(SEED) --scale $(SCALE)

test: setup system-deps
	$(BIN)/pytest -n 2 --dist loadfile --durations=15

# ruff: the rule set and the formatter are configured in pyproject.toml ([tool.ruff]);
# lint-imports: the import rules ([tool.importlinter]; docs/architecture.md).
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

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
