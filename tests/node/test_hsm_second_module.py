"""A second, independent PKCS#11 implementation: opencryptoki's soft token (Debian 12:
opencryptoki 3.8.1), set up by hsm-setup/opencryptoki-token.sh, next to SoftHSM2.

Every need of a node is tried for real on both (hsm/probe.py); the result for opencryptoki
is pinned to what was measured here (hsm/README.md, "Modules tested"), so a module update
that changes it fails this test and the table gets updated. opencryptoki 3.8.1's soft token
has no EC mechanism at all, so a node cannot open on it: that refusal is checked too."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from hsm import HSM
from hsm.errors import HSMMechanismError
from hsm.probe import NEEDS, PROBE_PREFIX, Check, probe
from hsm.softhsm import init_token

pytest.register_assert_rewrite("tests.hsm_fixtures")
from tests.hsm_fixtures import OPENCRYPTOKI_STATE, ROOT, opencryptoki_setup  # noqa: E402

# fixtures: opencryptoki_config
pytest_plugins = ["tests.hsm_fixtures"]

pytestmark = [pytest.mark.hsm]

# measured with `python -m hsm.probe` against opencryptoki 3.8.1+dfsg-3.2+b3 (Debian 12)
OPENCRYPTOKI_3_8_1 = {
    "aes256_token_key": Check(False, "AttributeTypeInvalid: the token does not know "
                                     "CKA_COPYABLE, CKA_DESTROYABLE (PKCS#11 2.20); made "
                                     "without them"),
    "aes_gcm_aad": Check(False, "MechanismInvalid"),
    "find_by_label": Check(True, f"found '{PROBE_PREFIX}aes'"),
    "ec_secp256k1_sign": Check(False, "MechanismInvalid"),
    "ec_p256_sign": Check(False, "MechanismInvalid"),
    "ecdh_p256_derive": Check(False, "MechanismInvalid"),
    "destroy": Check(True, "every probe object destroyed"),
}


def test_softhsm_meets_every_need(tmp_path):
    tok = init_token(tmp_path / "hsm", "probe-softhsm")
    desc, checks = probe(tok.hsm_config())
    assert desc == "SoftHSM project SoftHSM v2"
    assert list(checks) == list(NEEDS)
    assert all(c.ok for c in checks.values()), checks
    assert checks["aes_gcm_aad"].detail == "round trip; bad tag refused"


def test_opencryptoki_needs_as_measured(opencryptoki_config):
    desc, checks = probe(opencryptoki_config)
    assert desc == "IBM Corp. IBM SoftTok"
    assert checks == OPENCRYPTOKI_3_8_1
    # the probe left nothing on the shared token
    _, again = probe(opencryptoki_config)
    assert again == OPENCRYPTOKI_3_8_1


def test_a_node_refuses_to_open_on_opencryptoki_naming_what_is_missing(opencryptoki_config):
    with pytest.raises(HSMMechanismError) as ei:
        HSM.open(opencryptoki_config, node_id="node-1")
    assert ei.value.code == "hsm_mechanism_missing"
    assert str(ei.value) == (
        "token 'appliance-test' lacks mechanisms the node keys need: "
        "CKM_EC_KEY_PAIR_GEN, CKM_ECDSA, CKM_ECDH1_DERIVE"
    )


def test_probe_command_line_exit_codes(opencryptoki_config, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cfg = opencryptoki_config
    r = subprocess.run(
        [sys.executable, "-m", "hsm.probe", "--module", cfg.module, "--token-label",
         cfg.token_label, "--pin-file", str(cfg.pin_file)],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert r.returncode == 1, r.stderr
    out = json.loads(r.stdout)
    assert out["checks"]["ec_p256_sign"] == {"ok": False, "detail": "MechanismInvalid"}
    pin = cfg.pin_file.read_text().strip()
    assert pin not in r.stdout + r.stderr
    bad = tmp_path / "bad.pin"
    bad.write_text("00000000\n")
    bad.chmod(0o600)
    r = subprocess.run(
        [sys.executable, "-m", "hsm.probe", "--module", cfg.module, "--token-label",
         cfg.token_label, "--pin-file", str(bad)],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert (r.returncode, r.stderr.strip()) == (2, "error: token 'appliance-test' refused the PIN")
    # a good login right after: opencryptoki locks the user PIN after a few failed ones
    assert probe(cfg)[1] == OPENCRYPTOKI_3_8_1


def test_setup_script_is_idempotent_and_leaves_another_label_alone(opencryptoki_config):
    again = opencryptoki_setup()
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["pin_file"] == str(OPENCRYPTOKI_STATE / "user.pin")
    assert stat.S_IMODE(os.stat(OPENCRYPTOKI_STATE).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(OPENCRYPTOKI_STATE / "user.pin").st_mode) == 0o600
    assert len((OPENCRYPTOKI_STATE / "user.pin").read_text().strip()) == 8  # the token's max
    other = opencryptoki_setup(label="someone-else")
    assert other.returncode == 1
    assert other.stderr.strip() == (
        "error: the opencryptoki soft token is initialized as 'appliance-test', not "
        "'someone-else': not ours, left alone"
    )
