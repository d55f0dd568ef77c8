"""Fixtures for tests against a real SoftHSM2 token.

Each test gets its own token directory under its ``tmp_path`` (``hsm.softhsm.init_token``).
SoftHSM reads SOFTHSM2_CONF in C_Initialize and python-pkcs11 caches one library per
path, so a process can use one SoftHSM configuration at a time: the HSM layer switches
configuration (finalize, new SOFTHSM2_CONF, initialize) when no token of the previous one
is open. These fixtures therefore close every HSM they open at teardown, and a test that
needs two tokens at once puts both in one directory (``two_tokens``). Tests that need a
second process (restart, SIGKILL) run it with ``run_python``.

Import the fixtures you use into the test module:
``from tests.hsm_fixtures import hsm, softhsm_token  # noqa: F401``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SOFTHSM_LIB = "/usr/lib/softhsm/libsofthsm2.so"
ROOT = Path(__file__).resolve().parent.parent

#: tests that need SoftHSM2: missing is a failure (tests/conftest.py softhsm_installed), not a skip
requires_softhsm = pytest.mark.usefixtures("softhsm_installed")

NODE_ID = "node-1"

# softhsm2.conf ``slots.mechanisms`` values (softhsm2.conf(5)). SoftHSM 2.6.1 ignores the
# first name of a "-" list (it keeps the "-" on it), hence the empty first entry.
NO_GCM = "-,CKM_AES_GCM"
NO_SEALING = "-,CKM_AES_GCM,CKM_AES_CBC_PAD,CKM_SHA256_HMAC"


def hide_mechanisms(conf: Path, spec: str, out: Path | None = None) -> Path:
    """Write ``conf`` (or a copy at ``out``, same token directory) with ``slots.mechanisms
    = spec``: the real module then neither lists nor accepts those mechanisms."""
    text = Path(conf).read_text()
    assert "slots.mechanisms = ALL" in text
    out = Path(out or conf)
    out.write_text(text.replace("slots.mechanisms = ALL", f"slots.mechanisms = {spec}"))
    out.chmod(0o600)
    return out


@pytest.fixture(params=["all", "no-gcm"])
def softhsm_token(request, tmp_path):
    """A SoftHSM token offering every mechanism, and again one without CKM_AES_GCM (the
    node then seals with AES-CBC-PAD + HMAC-SHA256): every test using it runs on both."""
    from hsm.softhsm import init_token

    tok = init_token(tmp_path / "hsm", "node-1-token")
    if request.param == "no-gcm":
        hide_mechanisms(tok.conf, NO_GCM)
    return tok


@pytest.fixture
def open_hsms():
    """Open HSMs with ``open_hsms(config, node_id=...)``; all closed at teardown."""
    from hsm import HSM

    opened = []

    def _open(config, node_id=NODE_ID, **kw):
        h = HSM.open(config, node_id=node_id, **kw)
        opened.append(h)
        return h

    yield _open
    for h in reversed(opened):
        h.close()


@pytest.fixture
def hsm(softhsm_token, open_hsms):
    return open_hsms(softhsm_token.hsm_config())


@pytest.fixture
def two_tokens(tmp_path):
    """Two tokens (two nodes) in one token directory, usable at the same time."""
    from hsm.softhsm import init_token

    d = tmp_path / "hsm"
    return init_token(d, "node-a"), init_token(d, "node-b")


def object_files(token) -> dict[str, bytes]:
    """Contents of the token's key object files (SoftHSM's own token.object excluded:
    it records failed logins)."""
    out = {}
    for p in sorted(Path(token.token_dir).rglob("*.object")):
        if p.name != "token.object":
            out[str(p.relative_to(token.token_dir))] = p.read_bytes()
    return out


def run_python(code: str, *, timeout: float = 60, **popen) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter with the repository on sys.path."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SOFTHSM2_CONF", None)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True,
        text=True, timeout=timeout, **popen,
    )


def popen_python(code: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SOFTHSM2_CONF", None)
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )


# ---- the second PKCS#11 module: opencryptoki's soft token ------------------------------
# hsm-setup/opencryptoki-token.sh starts pkcsslotd and initializes the machine's one soft
# token (opencryptoki 3.8.1 has one per machine) as "appliance-test". Missing opencryptoki
# is a failure, not a skip: `make test` installs it (make system-deps).
OPENCRYPTOKI_SETUP = ROOT / "hsm-setup" / "opencryptoki-token.sh"
OPENCRYPTOKI_STATE = Path(os.environ.get("APPLIANCE_OPENCRYPTOKI_STATE",
                                         "/var/lib/appliance-hsm-test/opencryptoki"))


def opencryptoki_setup(state_dir: Path = OPENCRYPTOKI_STATE,
                       label: str = "appliance-test") -> subprocess.CompletedProcess:
    return subprocess.run([str(OPENCRYPTOKI_SETUP), str(state_dir), label],
                          capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def opencryptoki_config():
    """An HSMConfig for the opencryptoki test token (set up on first use)."""
    import json

    from hsm.config import HSMConfig

    r = opencryptoki_setup()
    assert r.returncode == 0, f"opencryptoki set-up failed: {r.stderr.strip()}"
    out = json.loads(r.stdout.strip().splitlines()[-1])
    return HSMConfig(token_label=out["label"], module=out["module"],
                     pin_file=Path(out["pin_file"]))
