# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test lint typecheck pytest demo bench clean services

# every stage and the lab (all), the checks (dev), the benchmarks' other engines (bench)
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all,dev,bench]'
	touch $(STAMP)

install: $(STAMP)

# redis-server for the Redis Streams tests, prometheus (and promtool) for the
# monitoring tests: system packages, installed here so a fresh machine needs no
# hand-run step.
services:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing redis-server (apt)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) \
	  || echo "warning: could not install redis-server"; }
	@command -v prometheus >/dev/null 2>&1 || { \
	  echo "installing prometheus (apt; the monitoring tests use it and promtool)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null) \
	  || echo "warning: could not install prometheus"; }

lint: $(STAMP)
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/ruff check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) services
	$(BIN)/pytest

test: lint typecheck pytest

demo: $(STAMP)
	$(BIN)/clickrouter demo

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_modelbank.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build src/*.egg-info
