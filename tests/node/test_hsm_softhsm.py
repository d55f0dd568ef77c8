"""The SoftHSM2 token set-up helper and its shell script."""

from __future__ import annotations

import json
import os
import stat
import subprocess

import pytest

from hsm import HSM, HSMConfigError
from hsm.softhsm import DEFAULT_TEMPLATE, TEMPLATE_PATH, init_token, token_labels
from tests.hsm_fixtures import ROOT, requires_softhsm

pytestmark = [pytest.mark.hsm, requires_softhsm]


def test_embedded_template_equals_the_file():
    assert TEMPLATE_PATH.read_text() == DEFAULT_TEMPLATE


def test_init_token_makes_an_isolated_directory(tmp_path):
    tok = init_token(tmp_path / "n1", "n1")
    assert tok.conf.read_text().count(f"directories.tokendir = {tok.token_dir}\n") == 1
    assert stat.S_IMODE(os.stat(tok.token_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tok.pin_file).st_mode) == 0o600
    assert len(tok.pin_file.read_text().strip()) == 32
    assert token_labels(tok.conf) == ["n1"]
    with pytest.raises(HSMConfigError):
        init_token(tmp_path / "n1", "n1")
    second = init_token(tmp_path / "n1", "n1-second", pin="1234-5678")
    assert second.pin_file is None
    assert sorted(token_labels(tok.conf)) == ["n1", "n1-second"]
    with HSM.open(second.hsm_config(pin="1234-5678"), node_id="n") as h:
        assert len(h.identity_public_key) == 33


def test_shell_script_uses_the_python_helper(tmp_path):
    env = {**os.environ, "SOFTHSM_PIN": "pin-from-env-123"}
    r = subprocess.run(
        [str(ROOT / "softhsm-config" / "init-token.sh"), str(tmp_path / "d"), "demo-node"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["label"] == "demo-node" and out["pin_file"] == ""
    assert "pin-from-env-123" not in r.stdout + r.stderr
    assert token_labels(out["conf"]) == ["demo-node"]
    r = subprocess.run(
        [str(ROOT / "softhsm-config" / "init-token.sh"), str(tmp_path / "d"), "demo-node"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert r.returncode == 1 and "already exists" in r.stderr
    assert "pin-from-env-123" not in r.stdout + r.stderr
