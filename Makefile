# Quick start: `make demo` and `make test` (both install what they need on a fresh machine).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
SOFTHSM_LIB ?= /usr/lib/softhsm/libsofthsm2.so
PYTEST_ARGS ?=

.PHONY: demo test soak bench bench-keys lint setup system-deps clean

# System packages (Debian/Ubuntu, apt-get): one list, add a package here. opencryptoki: the
# second PKCS#11 module the HSM tests probe (hsm/README.md, "Modules tested";
# hsm-setup/opencryptoki-token.sh starts its daemon and makes its token); openssl and curl: the
# commands of docs/deploy.md (run by tests/cluster/test_deploy_doc.py); prometheus: promtool,
# which checks the metrics exposition in make test; chromium and chromium-driver: the headless
# browser of the approval console's test (tests/ui/test_console_browser.py).
SYSTEM_PACKAGES ?= softhsm2 libsofthsm2 opencryptoki openssl curl prometheus chromium chromium-driver
OPENCRYPTOKI_TOOLS ?= /usr/sbin/pkcsslotd /usr/sbin/pkcsconf
# true when one of them is missing (shell builtins only)
OPENCRYPTOKI_MISSING := $(foreach t,$(OPENCRYPTOKI_TOOLS),[ ! -x "$(t)" ] ||) false
# after the install, a tool or the library counts where it was asked for or where the Debian
# package puts it (`make system-deps SOFTHSM_LIB=/nonexistent` forces an install, then finds
# the packaged library)
SOFTHSM_PACKAGED_LIB := /usr/lib/softhsm/libsofthsm2.so
OPENCRYPTOKI_STILL_MISSING := $(foreach t,$(OPENCRYPTOKI_TOOLS),{ [ ! -x "$(t)" ] && [ ! -x "/usr/sbin/$(notdir $(t))" ]; } ||) false
# the commands the other packages bring (true when one is missing)
COMMANDS ?= softhsm2-util openssl curl promtool chromium chromedriver
COMMANDS_MISSING := $(foreach c,$(COMMANDS),! command -v $(c) >/dev/null ||) false
# apt-get runs as root: directly when we are root (SUDO empty, the usual case in containers
# and CI), through sudo otherwise; `make system-deps SUDO=` forces the root form. apt-get
# gets its environment through `env`, so an empty SUDO never makes `VAR=value` the command.
SUDO ?= $(if $(filter 0,$(shell id -u)),,sudo)
APT_GET := env DEBIAN_FRONTEND=noninteractive apt-get
# FORCE=1 installs even when everything is present (apt-get install --reinstall) and then
# checks that the library file was replaced: `.ci/run` does this, so every CI run goes
# through the install path whatever the machine already has.
FORCE ?=

system-deps:
	@if [ -n "$(FORCE)" ] || [ ! -e "$(SOFTHSM_LIB)" ] || $(COMMANDS_MISSING) || \
	    $(OPENCRYPTOKI_MISSING); then \
	  set -e; \
	  before=$$(stat -L -c %i "$(SOFTHSM_LIB)" 2>/dev/null || echo absent); \
	  echo "system-deps: installing $(SYSTEM_PACKAGES)"; \
	  $(SUDO) $(APT_GET) update -qq; \
	  $(SUDO) $(APT_GET) install -y -qq $(if $(FORCE),--reinstall )$(SYSTEM_PACKAGES) >/dev/null; \
	  lib="$(SOFTHSM_LIB)"; [ -e "$$lib" ] || lib="$(SOFTHSM_PACKAGED_LIB)"; \
	  after=$$(stat -L -c %i "$$lib" 2>/dev/null || echo absent); \
	  if [ "$$after" = absent ] || $(COMMANDS_MISSING); then \
	    echo "system-deps: apt-get finished but $(SOFTHSM_LIB) or one of $(COMMANDS) is missing" >&2; exit 1; \
	  fi; \
	  if $(OPENCRYPTOKI_STILL_MISSING); then \
	    echo "system-deps: apt-get finished but one of $(OPENCRYPTOKI_TOOLS) is missing" >&2; exit 1; \
	  fi; \
	  if [ -n "$(FORCE)" ] && [ "$$before" = "$$after" ]; then \
	    echo "system-deps: $(SOFTHSM_LIB) was not replaced (inode $$after): nothing was installed" >&2; exit 1; \
	  fi; \
	  echo "system-deps: $$lib installed (inode $$before -> $$after)"; \
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
	$(PY) -m pytest -n 2 --dist loadfile -q --durations=20 $(PYTEST_ARGS)

# the long versions: 500 signatures from 20 clients, more fuzz examples (APPLIANCE_SOAK=1),
# the soak-marked fault and partition runs; -m "" selects the soak-marked tests too
SOAK_TESTS ?= tests/tss/test_fuzz_protocol.py tests/api/test_fuzz_api.py tests/cluster/test_load.py tests/cluster/test_faults.py tests/cluster/test_netns.py
soak: setup
	APPLIANCE_SOAK=1 $(PY) -m pytest -n 2 --dist loadfile -q -s -m "" $(wildcard $(SOAK_TESTS)) $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/appliance demo

# everything, keys at scale included (DESIGN.md's bench names: keys_1000_create_s_2048 too)
bench: setup
	$(PY) -m bench.run
	$(PY) -m bench.keys_bench --keys 1000 --merge

# keys at scale alone: 1,000 ECDSA keys on a 2-of-3 cluster from pooled aux-info (minutes;
# merged into bench/results.json as keys_1000_create_s_2048 and keys_1000_sign_random_ms_2048)
bench-keys: setup
	$(PY) -m bench.keys_bench --keys 1000 --merge

lint: setup
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check appliance hsm api tests bench

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
