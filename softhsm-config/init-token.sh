#!/usr/bin/env bash
# Create an isolated SoftHSM2 token directory and initialize one token in it.
#
#   softhsm-config/init-token.sh DIR LABEL
#
# Writes DIR/softhsm2.conf (from softhsm2.conf.template, directories.tokendir = DIR/tokens)
# and runs `softhsm2-util --init-token --free --label LABEL --pin P --so-pin S` with
# SOFTHSM2_CONF pointing at it. The user PIN comes from $SOFTHSM_PIN if set, otherwise a
# random one is written to DIR/LABEL.pin (0600); the SO PIN from $SOFTHSM_SO_PIN if set,
# otherwise random and not kept. Prints one JSON line: conf, token_dir, label, pin_file.
# Then: export SOFTHSM2_CONF=DIR/softhsm2.conf
#
# The work is done by hsm/softhsm.py (one implementation for this script, the tests, the
# demo and the Dockerfile); PYTHON selects the interpreter (default: the repo's .venv).
set -euo pipefail
umask 077  # the token directory, its PIN file and softhsm2.conf are for this user only
if [ $# -ne 2 ]; then
  echo "usage: $0 DIR LABEL" >&2
  exit 2
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$root/.venv/bin/python" ]; then PYTHON="$root/.venv/bin/python"; else PYTHON=python3; fi
fi
args=(init --dir "$1" --label "$2")
if [ -n "${SOFTHSM_PIN:-}" ]; then args+=(--pin-env SOFTHSM_PIN); fi
if [ -n "${SOFTHSM_SO_PIN:-}" ]; then args+=(--so-pin-env SOFTHSM_SO_PIN); fi
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" exec "$PYTHON" -m hsm.softhsm "${args[@]}"
