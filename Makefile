# One target per habit. Everything runs inside .venv, created on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEVSTAMP := $(VENV)/.installed-dev
PYTEST_ARGS ?=
BENCH_ARGS ?=
FAULTS_ARGS ?=
# make run PORT=9000: the port `opstatus serve` listens on
PORT ?= 8080

.PHONY: run test lint bench faults install install-dev clean browser wrk

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

run: $(STAMP)  ## install and start the service on ./opstatus.db (SQLite), on port $(PORT)
	$(BIN)/opstatus serve --port $(PORT)

# The dashboard's browser test drives Debian's chromium: install it when missing and we can.
browser:
	@command -v chromium >/dev/null || (command -v apt-get >/dev/null && [ $$(id -u) = 0 ] \
		&& apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || true

test: $(DEVSTAMP) browser  ## the whole suite; PostgreSQL tests skip unless reachable (required in CI)
	$(BIN)/python -m pytest --cov=opstatus --cov-report=term:skip-covered $(PYTEST_ARGS)

lint: $(DEVSTAMP)
	$(BIN)/ruff check opstatus tests bench faults
	$(BIN)/ruff format --check opstatus tests bench faults
	$(BIN)/mypy

BENCHSTAMP := $(VENV)/.installed-bench

$(BENCHSTAMP): pyproject.toml $(DEVSTAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $@

# wrk (HTTP load) from Debian: install it when missing and we can.
wrk:
	@command -v wrk >/dev/null || (command -v apt-get >/dev/null && [ $$(id -u) = 0 ] \
		&& apt-get update -qq && apt-get install -y -qq wrk >/dev/null) || true

bench: $(BENCHSTAMP) wrk  ## P1-P7 -> BENCHMARKS.md and bench/results.json (BENCH_ARGS=--quick for a smoke run)
	$(BIN)/python -m bench $(BENCH_ARGS)

faults: $(BENCHSTAMP)  ## the fault suite -> FAULTS.md and faults/results.json
	$(BIN)/python -m faults $(FAULTS_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
