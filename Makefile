# One target per habit. Everything runs inside .venv, created on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEVSTAMP := $(VENV)/.installed-dev
PYTEST_ARGS ?=

.PHONY: run test lint bench faults install install-dev clean browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(DEVSTAMP): pyproject.toml $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(STAMP)
install-dev: $(DEVSTAMP)

run: $(STAMP)  ## install and start the service on ./opstatus.db (SQLite)
	$(BIN)/opstatus serve

# The dashboard's browser test drives Debian's chromium: install it when missing and we can.
browser:
	@command -v chromium >/dev/null || (command -v apt-get >/dev/null && [ $$(id -u) = 0 ] \
		&& apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || true

test: $(DEVSTAMP) browser  ## the whole suite; PostgreSQL tests skip unless reachable (required in CI)
	$(BIN)/python -m pytest --cov=opstatus --cov-report=term:skip-covered $(PYTEST_ARGS)

lint: $(DEVSTAMP)
	$(BIN)/ruff check opstatus tests
	$(BIN)/ruff format --check opstatus tests
	$(BIN)/mypy

bench: $(DEVSTAMP)
	@echo "make bench: not yet (the benchmarks issue builds bench/)"

faults: $(DEVSTAMP)
	@echo "make faults: not yet (the benchmarks issue builds the fault suite)"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
