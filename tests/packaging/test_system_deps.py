"""The Makefile's system-package install (`make system-deps`), run for real with a fake
`apt-get` (and a fake `sudo`) first on PATH: the exact command lines, the root form with an
empty SUDO (issue 14: `$SUDO DEBIAN_FRONTEND=... apt-get` ran the assignment as the command),
the install branch taken on a machine without SoftHSM2, and a no-op install refused.

The fakes record their argv (and apt-get its DEBIAN_FRONTEND) and `apt-get install` "installs"
by writing a new library file and a `softhsm2-util` next to itself. `.ci/run` runs the real
install (`make system-deps FORCE=1`) on every CI machine."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAKE = shutil.which("make")
# the tools the recipe runs besides apt-get and sudo (bash is the Makefile's SHELL, by path)
TOOLS = ("env", "stat", "id", "cat")

FAKE_APT = """#!/bin/bash
echo "apt-get $* [DEBIAN_FRONTEND=${DEBIAN_FRONTEND-unset}]" >> "$FAKE_LOG"
if [ "$1" = install ] && [ -z "${FAKE_APT_NOOP:-}" ]; then
  /bin/mkdir -p "${FAKE_LIB%/*}"
  echo lib > "$FAKE_LIB.new" && /bin/mv "$FAKE_LIB.new" "$FAKE_LIB"
  printf '#!/bin/bash\\necho 2.6.1\\n' > "$FAKE_BIN/softhsm2-util" && /bin/chmod +x "$FAKE_BIN/softhsm2-util"
  for t in pkcsslotd pkcsconf openssl curl promtool chromium chromedriver; do echo > "$FAKE_BIN/$t" && /bin/chmod +x "$FAKE_BIN/$t"; done
fi
"""

FAKE_SUDO = """#!/bin/bash
echo "sudo $*" >> "$FAKE_LOG"
exec "$@"
"""


def _packages() -> str:
    """SYSTEM_PACKAGES as the Makefile sets it (one list, which other tracks extend)."""
    m = re.search(r"^SYSTEM_PACKAGES \?= (.+)$", (ROOT / "Makefile").read_text(), re.M)
    assert m, "Makefile: no `SYSTEM_PACKAGES ?= ...` line"
    return " ".join(m.group(1).split())


@pytest.fixture
def fake(tmp_path):
    """A PATH holding only the fakes and the few real tools the recipe needs (no
    softhsm2-util), and a library location where nothing is installed yet."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for tool in TOOLS:
        (bin_ / tool).symlink_to(shutil.which(tool))
    for name, text in (("apt-get", FAKE_APT), ("sudo", FAKE_SUDO)):
        (bin_ / name).write_text(text)
        (bin_ / name).chmod(0o755)
    lib = tmp_path / "lib" / "softhsm" / "libsofthsm2.so"
    log = tmp_path / "calls.log"
    env = {"PATH": str(bin_), "FAKE_LOG": str(log), "FAKE_LIB": str(lib), "FAKE_BIN": str(bin_),
           "HOME": str(tmp_path), "LANG": "C"}

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess:
        cmd = [MAKE, "-s", "--no-print-directory", "-C", str(ROOT), "system-deps",
               f"SOFTHSM_LIB={lib}", f"OPENCRYPTOKI_TOOLS={bin_}/pkcsslotd {bin_}/pkcsconf",
               *args]
        return subprocess.run(cmd, env=env | extra, capture_output=True, text=True, timeout=60)

    def calls() -> list[str]:
        return log.read_text().splitlines() if log.exists() else []

    def install_now() -> None:
        """SoftHSM2 already present, as on a machine set up before."""
        subprocess.run([str(bin_ / "apt-get"), "install"], env=env, check=True)
        log.unlink()

    return run, calls, install_now, lib


def test_root_form_with_empty_sudo_runs_apt_get_itself(fake):
    run, calls, _, lib = fake
    r = run("SUDO=")
    assert r.returncode == 0, r.stderr
    pk = _packages()
    assert calls() == [
        "apt-get update -qq [DEBIAN_FRONTEND=noninteractive]",
        f"apt-get install -y -qq {pk} [DEBIAN_FRONTEND=noninteractive]",
    ]
    assert r.stdout.splitlines()[0] == f"system-deps: installing {pk}"
    assert r.stdout.splitlines()[-1].startswith(f"system-deps: {lib} installed (inode absent -> ")
    assert lib.exists()


def test_through_sudo_the_environment_goes_by_env(fake):
    run, calls, _, _ = fake
    r = run("SUDO=sudo")
    assert r.returncode == 0, r.stderr
    pk = _packages()
    assert calls() == [
        "sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq",
        "apt-get update -qq [DEBIAN_FRONTEND=noninteractive]",
        f"sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {pk}",
        f"apt-get install -y -qq {pk} [DEBIAN_FRONTEND=noninteractive]",
    ]


def test_default_sudo_is_empty_for_root_and_sudo_otherwise(fake):
    run, calls, _, _ = fake
    r = run()
    assert r.returncode == 0, r.stderr
    through_sudo = [c for c in calls() if c.startswith("sudo ")]
    assert len(through_sudo) == (0 if os.getuid() == 0 else 2), calls()
    assert len(calls()) - len(through_sudo) == 2


def test_present_means_nothing_to_do_unless_forced(fake):
    run, calls, install_now, lib = fake
    install_now()
    r = run("SUDO=")
    assert (r.returncode, r.stdout, r.stderr, calls()) == (0, "", "", [])
    before = lib.stat().st_ino
    r = run("SUDO=", "FORCE=1")
    assert r.returncode == 0, r.stderr
    assert calls()[-1] == f"apt-get install -y -qq --reinstall {_packages()} [DEBIAN_FRONTEND=noninteractive]"
    assert lib.stat().st_ino != before
    assert r.stdout.splitlines()[-1] == f"system-deps: {lib} installed (inode {before} -> {lib.stat().st_ino})"


def test_forced_install_that_replaces_nothing_fails(fake):
    run, calls, install_now, lib = fake
    install_now()
    ino = lib.stat().st_ino
    r = run("SUDO=", "FORCE=1", FAKE_APT_NOOP="1")
    assert r.returncode != 0
    assert r.stderr.splitlines()[-2] == (
        f"system-deps: {lib} was not replaced (inode {ino}): nothing was installed")


def test_install_that_leaves_softhsm_missing_fails(fake):
    run, calls, _, lib = fake
    r = run("SUDO=", FAKE_APT_NOOP="1")
    assert r.returncode != 0
    assert r.stderr.splitlines()[-2] == (
        f"system-deps: apt-get finished but {lib} or one of softhsm2-util openssl curl promtool chromium chromedriver is missing")
