#!/usr/bin/env bash
# Start opencryptoki's slot daemon if it is not running and initialize its soft token for
# the tests (idempotent; as root; no systemd needed).
#
#   hsm-setup/opencryptoki-token.sh [STATE_DIR] [LABEL]
#
# STATE_DIR (default /var/lib/appliance-hsm-test/opencryptoki, 0700) keeps the token's SO
# and user PINs (so.pin, user.pin, 0600). opencryptoki 3.8.1 (Debian 12) has ONE soft token
# per machine (its data directory /var/lib/opencryptoki/swtok is compiled in), so
# isolation is by label: a fresh token (SO PIN still the factory 87654321) is initialized
# with LABEL (default appliance-test); a token already initialized with LABEL whose PINs are
# in STATE_DIR is used as it is; any other initialized token is refused (it is not ours).
# PINs are 8 characters: the soft token's maximum.
# Prints one JSON line: module, slot, label, pin_file.
set -euo pipefail

STATE_DIR=${1:-/var/lib/appliance-hsm-test/opencryptoki}
LABEL=${2:-appliance-test}
FACTORY_SO_PIN=87654321

die() { echo "error: $*" >&2; exit 1; }

for tool in pkcsslotd pkcsconf flock; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || \
    die "$tool not found: install opencryptoki (make system-deps)"
done
PATH=$PATH:/usr/sbin
MODULE=$(ls /usr/lib/*/pkcs11/libopencryptoki.so 2>/dev/null | head -n1 || true)
[ -n "$MODULE" ] || die "libopencryptoki.so not found: install opencryptoki (make system-deps)"
[ ${#LABEL} -ge 1 ] && [ ${#LABEL} -le 32 ] || die "the label must be 1 to 32 characters"

mkdir -p "$STATE_DIR"
chmod 700 "$STATE_DIR"
exec 9>"$STATE_DIR/.lock"
flock 9

# what systemd-tmpfiles would have made (/usr/lib/tmpfiles.d/opencryptoki.conf)
for d in /var/lock/opencryptoki /var/lock/opencryptoki/swtok /var/lib/opencryptoki \
         /var/lib/opencryptoki/swtok /var/lib/opencryptoki/swtok/TOK_OBJ /var/log/opencryptoki; do
  mkdir -p "$d"
  chgrp pkcs11 "$d" 2>/dev/null || true
  chmod 770 "$d"
done

alive() { [ -f /var/run/pkcsslotd.pid ] && kill -0 "$(cat /var/run/pkcsslotd.pid)" 2>/dev/null; }
start_daemon() {
  # a daemon that is shutting down (its socket already gone) is waited for, not used
  for _ in $(seq 50); do { alive && [ ! -S /var/run/pkcsslotd.socket ]; } || break; sleep 0.1; done
  if ! { alive && [ -S /var/run/pkcsslotd.socket ]; }; then
    rm -f /var/run/pkcsslotd.pid /var/run/pkcsslotd.socket
    # not holding the lock (fd 9) or our output open for the life of the daemon
    # in its own session, detached from the caller's
    setsid pkcsslotd </dev/null >/dev/null 2>&1 9>&- || die "pkcsslotd did not start"
    for _ in $(seq 50); do [ -S /var/run/pkcsslotd.socket ] && break; sleep 0.1; done
    [ -S /var/run/pkcsslotd.socket ] || die "pkcsslotd did not open its socket"
  fi
}
start_daemon
if ! pkcsconf -t >/dev/null 2>&1; then
  # a daemon left from before the package was reinstalled (make system-deps FORCE=1) answers
  # with CKR_HOST_MEMORY: stop it and start the installed one, once
  kill "$(cat /var/run/pkcsslotd.pid)" 2>/dev/null || true
  for _ in $(seq 50); do alive || break; sleep 0.1; done
  rm -f /var/run/pkcsslotd.pid /var/run/pkcsslotd.socket
  start_daemon
fi

# the soft token's slot: the token whose model is "IBM SoftTok"
tokens=$(pkcsconf -t) || die "pkcsconf cannot list the tokens (is pkcsslotd answering?)"
SLOT=$(printf '%s\n' "$tokens" | awk '/^Token #/ {sub("#", "", $2); slot=$2} /Model: IBM SoftTok/ {print slot; exit}')
[ -n "$SLOT" ] || die "no opencryptoki soft token (libpkcs11_sw.so) in /etc/opencryptoki/opencryptoki.conf"
info=$(pkcsconf -t -c "$SLOT") || die "pkcsconf cannot read token $SLOT"
current=$(printf '%s\n' "$info" | sed -n 's/^[[:space:]]*Label: //p' | sed 's/[[:space:]]*$//')
flags=$(printf '%s\n' "$info" | sed -n 's/^[[:space:]]*Flags: //p')

if [[ $flags == *TOKEN_INITIALIZED* ]]; then
  [ "$current" = "$LABEL" ] || die "the opencryptoki soft token is initialized as '$current', not '$LABEL': not ours, left alone"
  [ -s "$STATE_DIR/user.pin" ] || die "token '$LABEL' is initialized but $STATE_DIR/user.pin is missing"
elif [[ $flags == *SO_PIN_TO_BE_CHANGED* ]]; then
  umask 077
  so_pin=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
  user_pin=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
  printf '%s\n' "$LABEL" | pkcsconf -I -c "$SLOT" -S "$FACTORY_SO_PIN" >/dev/null \
    || die "pkcsconf could not initialize the token"
  pkcsconf -P -c "$SLOT" -S "$FACTORY_SO_PIN" -n "$so_pin" >/dev/null || die "could not set the SO PIN"
  printf '%s\n' "$so_pin" >"$STATE_DIR/so.pin"
  pkcsconf -u -c "$SLOT" -S "$so_pin" -n "$user_pin" >/dev/null || die "could not set the user PIN"
  printf '%s\n' "$user_pin" >"$STATE_DIR/user.pin"
else
  die "the opencryptoki soft token is neither fresh nor initialized (flags: $flags)"
fi

printf '{"module": "%s", "slot": %s, "label": "%s", "pin_file": "%s"}\n' \
  "$MODULE" "$SLOT" "$LABEL" "$STATE_DIR/user.pin"
