# rackctl — one Makefile for setup, run, test, bench, lint, gen and fw.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
# promtool (from Debian's prometheus package, unpacked, no service) validates /metrics in tests
PROMTOOL := $(CURDIR)/.venv/prometheus/usr/bin/promtool
export PROMTOOL
PYTEST_ARGS ?=

.PHONY: setup run test test-fast bench lint gen gen-check fw images clean

setup: $(STAMP) $(NODE_STAMP) $(PROMTOOL)

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PIP) install -q --disable-pip-version-check --upgrade pip > $(VENV)/pip.log 2>&1 || { cat $(VENV)/pip.log; exit 1; }
	@$(PIP) install -q --disable-pip-version-check -e '.[dev]' > $(VENV)/pip.log 2>&1 || { cat $(VENV)/pip.log; exit 1; }
	@touch $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	@command -v node >/dev/null || { echo "node >= 20 is required (see README)"; exit 1; }
	@npm ci --silent --no-audit --no-fund
	@touch $(NODE_STAMP)

$(PROMTOOL): | $(STAMP)
	@echo "fetching promtool (Debian package prometheus, unpacked into .venv/prometheus)"
	@if command -v apt-get >/dev/null; then \
		tmp=$$(mktemp -d) && chmod 755 $$tmp && cd $$tmp && \
		( apt-get download -qq prometheus >/dev/null 2>&1 || \
		  { apt-get update -qq >/dev/null 2>&1 && apt-get download -qq prometheus >/dev/null 2>&1; } ) && \
		dpkg -x prometheus_*.deb $(CURDIR)/.venv/prometheus && rm -rf $$tmp; \
	fi; \
	test -x $(PROMTOOL) || { echo "warning: promtool unavailable; the promtool checks will be skipped"; mkdir -p $$(dirname $(PROMTOOL)); }

run: setup
	@$(VENV)/bin/rackctl run

test: setup
	@$(VENV)/bin/ruff check --quiet .
	@mkdir -p artifacts
	@$(PY) -m pytest -q --junitxml=artifacts/junit.xml $(PYTEST_ARGS)

test-fast: setup
	@$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

bench: setup
	@$(PY) -m benchmarks.run

lint: setup
	@$(VENV)/bin/ruff check .

gen: setup
	@$(PY) -m rackproto.codegen.write

gen-check: setup
	@$(PY) -m rackproto.codegen.write --check

fw: setup
	@$(PY) -m tools.fw_build

images: setup
	@mkdir -p build
	@$(PY) -m tools.build_image --board power_shelf --mpy -o build/power_shelf.rfw
	@$(PY) -m tools.build_image --board cdu --mpy -o build/cdu.rfw

clean:
	rm -rf $(VENV) node_modules build *.egg-info var artifacts
