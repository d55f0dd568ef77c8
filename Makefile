# Quick start: `make demo` and `make test` (both install what they need on a fresh machine).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
SOFTHSM_LIB ?= /usr/lib/softhsm/libsofthsm2.so
PYTEST_ARGS ?=

.PHONY: demo test soak bench lint setup system-deps clean

system-deps:
	@if [ ! -e "$(SOFTHSM_LIB)" ] || ! command -v softhsm2-util >/dev/null; then \
	  echo "installing softhsm2"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq softhsm2 >/dev/null; \
	fi

$(VENV)/.installed: pyproject.toml
	@command -v python3 >/dev/null || { echo "python3 is required"; exit 1; }
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $@

setup: system-deps $(VENV)/.installed

# the walls (import-linter contracts in pyproject.toml) and ruff first: a violation fails the run
test: lint
	$(PY) -m pytest -n 2 --dist loadfile -q $(PYTEST_ARGS)

# the long versions: 500 signatures from 20 clients, more fuzz examples (APPLIANCE_SOAK=1),
# the soak-marked fault and partition runs; -m "" selects the soak-marked tests too
SOAK_TESTS ?= tests/tss/test_fuzz_protocol.py tests/api/test_fuzz_api.py tests/cluster/test_load.py tests/cluster/test_faults.py tests/cluster/test_netns.py
soak: setup
	APPLIANCE_SOAK=1 $(PY) -m pytest -n 2 --dist loadfile -q -s -m "" $(wildcard $(SOAK_TESTS)) $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/appliance demo

bench: setup
	$(PY) -m bench.run

lint: setup
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check appliance hsm api tests bench

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
