# rackctl — one Makefile for setup, run, test, bench, lint, gen and fw.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
PYTEST_ARGS ?=

.PHONY: setup run test test-fast bench lint gen gen-check fw clean

setup: $(STAMP) $(NODE_STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PIP) install -q --disable-pip-version-check --upgrade pip
	@$(PIP) install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	@command -v node >/dev/null || { echo "node >= 20 is required (see README)"; exit 1; }
	@npm ci --silent --no-audit --no-fund
	@touch $(NODE_STAMP)

run: setup
	@$(VENV)/bin/rackctl run

test: setup
	@$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: setup
	@$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

bench: setup
	@$(PY) -m benchmarks.run

lint: setup
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check protocols host || true

gen: setup
	@$(PY) -m rackproto.codegen.write

gen-check: setup
	@$(PY) -m rackproto.codegen.write --check

fw: setup
	@$(PY) -m tools.fw_build

clean:
	rm -rf $(VENV) node_modules build *.egg-info var artifacts
