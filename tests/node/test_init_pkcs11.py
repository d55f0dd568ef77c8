"""``appliance init`` on an existing token of any PKCS#11 module (SoftHSM2 here, used as an
ordinary module: its token made beforehand, its configuration in the environment, as an
operator's module would be), the explicit ``--softhsm`` test token, the usage errors, and
where a node may read its PIN from (never from node.toml)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from appliance import cli
from appliance.config import ConfigError, load_node_config, write_toml
from appliance.init_hsm import SoftHSMSetup
from hsm import HSMConfigError
from hsm.config import HSMConfig
from hsm.softhsm import init_token
from tests.hsm_fixtures import ROOT, SOFTHSM_LIB, requires_softhsm

pytestmark = [pytest.mark.hsm, requires_softhsm]

USAGE = ("error: usage: say which HSM the node uses: --pkcs11-module PATH --token-label L "
         "(--pin-env VAR | --pin-file F), or --softhsm DIR for a test token\n")


def _appliance(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    e = dict(os.environ, PYTHONPATH=str(ROOT))
    e.pop("SOFTHSM2_CONF", None)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], capture_output=True,
                          text=True, timeout=120, env=e, cwd=ROOT)


def _init(d: Path, *flags: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return _appliance("init", "--dir", str(d), "--node-id", "node-1", "--listen", "127.0.0.1:8441",
                      "--paillier-bits", "2048", *flags, env=env)


@pytest.fixture
def operator_token(tmp_path):
    """A token the operator made on their module, its PIN in a 0600 file outside any node
    directory, the module's configuration in the environment."""
    tok = init_token(tmp_path / "module", "custody-1")
    return tok, {"SOFTHSM2_CONF": str(tok.conf)}


def test_init_on_an_existing_token_and_again_finds_the_same_keys(tmp_path, operator_token):
    tok, env = operator_token
    p = _init(tmp_path / "n1", "--pkcs11-module", SOFTHSM_LIB, "--token-label", "custody-1",
              "--pin-file", str(tok.pin_file), env=env)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["sealing"] == "CKM_AES_GCM"
    text = (tmp_path / "n1" / "node.toml").read_text()
    assert tomllib.loads(text)["hsm"] == {"module": SOFTHSM_LIB, "token_label": "custody-1",
                                          "pin_file": str(tok.pin_file)}
    pin = tok.pin_file.read_text().strip()
    for f in (tmp_path / "n1").rglob("*"):
        assert f.is_dir() or pin.encode() not in f.read_bytes(), f
    first = json.loads((tmp_path / "n1" / "node-info.json").read_text())
    # init again (e.g. the data directory was lost): the token's keys are found, not re-made
    p = _init(tmp_path / "n2", "--pkcs11-module", SOFTHSM_LIB, "--token-label", "custody-1",
              "--pin-env", "CUSTODY_PIN", env={**env, "CUSTODY_PIN": pin})
    assert p.returncode == 0, p.stderr
    assert tomllib.loads((tmp_path / "n2" / "node.toml").read_text())["hsm"] == {
        "module": SOFTHSM_LIB, "token_label": "custody-1", "pin_env": "CUSTODY_PIN"}
    again = json.loads((tmp_path / "n2" / "node-info.json").read_text())
    assert (again["identity_key"], again["transport_key"]) == (first["identity_key"],
                                                               first["transport_key"])
    assert not (tmp_path / "n1" / "hsm").exists()  # no SoftHSM token made by init


def test_softhsm_test_token_with_the_pin_from_a_secret_file(tmp_path):
    """The compose file's form: --softhsm with the PIN from a mounted secret (0440)."""
    secret = tmp_path / "secrets" / "hsm-pin"
    secret.parent.mkdir()
    secret.write_text("5678-compose\n")
    secret.chmod(0o440)
    d = tmp_path / "n1"
    p = _init(d, "--softhsm", str(d / "hsm"), "--token-label", "node-1", "--pin-file", str(secret))
    assert p.returncode == 0, p.stderr
    assert tomllib.loads((d / "node.toml").read_text())["hsm"] == {
        "token_label": "node-1", "pin_file": str(secret), "softhsm_conf": "hsm/softhsm2.conf",
        "module": SOFTHSM_LIB}
    assert list((d / "hsm").glob("*.pin")) == []


@pytest.mark.parametrize("flags,message", [
    ((), USAGE),
    (("--softhsm", "X", "--pkcs11-module", SOFTHSM_LIB),
     "error: usage: --softhsm makes a new SoftHSM2 token; --pkcs11-module uses an existing token: "
     "give one of them\n"),
    (("--softhsm", "X", "--pin-env", "P", "--pin-file", "F"),
     "error: usage: give at most one of --pin-env and --pin-file\n"),
    (("--pkcs11-module", SOFTHSM_LIB, "--pin-env", "P"),
     "error: usage: --pkcs11-module needs --token-label\n"),
    (("--pkcs11-module", SOFTHSM_LIB, "--token-label", "t"),
     "error: usage: --pkcs11-module needs --pin-env or --pin-file\n"),
])
def test_init_without_a_clear_hsm_is_a_usage_error(tmp_path, flags, message):
    p = _init(tmp_path / "n1", *flags)
    assert (p.returncode, p.stderr, p.stdout) == (2, message, "")
    assert not (tmp_path / "n1").exists()


def test_init_refuses_a_pin_file_inside_its_directory(tmp_path, operator_token):
    tok, env = operator_token
    d = tmp_path / "n1"
    d.mkdir(mode=0o700)
    inside = d / "pin"
    inside.write_text(tok.pin_file.read_text())
    inside.chmod(0o600)
    p = _init(d, "--pkcs11-module", SOFTHSM_LIB, "--token-label", "custody-1",
              "--pin-file", str(inside), env=env)
    assert p.returncode == 1
    assert p.stderr == (f"error: hsm_config: the PIN file {str(inside)!r} is inside the node's data directory "
                        f"{str(d)!r}: keep it out of the node's state (pin_env, or a file "
                        "elsewhere)\n")
    assert not (d / "node.toml").exists()


# ---- where the PIN may come from ------------------------------------------------------------

def test_pin_file_rules(tmp_path):
    state, elsewhere = tmp_path / "node", tmp_path / "secrets"
    for d in (state, elsewhere, state / "hsm"):
        d.mkdir()
    good = elsewhere / "pin"
    good.write_text("1234\n")
    good.chmod(0o640)  # owner and group: fine
    assert HSMConfig(token_label="t", pin_file=good, state_dir=state).read_pin().reveal() == "1234"
    good.chmod(0o644)
    with pytest.raises(HSMConfigError) as e:
        HSMConfig(token_label="t", pin_file=good, state_dir=state).read_pin()
    assert str(e.value) == (f"the PIN file {str(good)!r} is open to other users (mode 0644): "
                            "allow its owner (and group) only, e.g. 0600 or 0400")
    inside = state / "node-1.pin"
    inside.write_text("1234\n")
    inside.chmod(0o600)
    with pytest.raises(HSMConfigError) as e:
        HSMConfig(token_label="t", pin_file=inside, state_dir=state).read_pin()
    assert str(e.value) == (f"the PIN file {str(inside)!r} is inside the node's data directory "
                            f"{str(state)!r}: keep it out of the node's state (pin_env, or a "
                            "file elsewhere)")
    # the --softhsm test layout: the PIN beside the software token's own softhsm2.conf
    beside = state / "hsm" / "node-1.pin"
    beside.write_text("1234\n")
    beside.chmod(0o600)
    cfg = HSMConfig(token_label="t", pin_file=beside, softhsm_conf=state / "hsm" / "softhsm2.conf",
                    state_dir=state)
    assert cfg.read_pin().reveal() == "1234"


def test_a_pin_in_node_toml_is_a_config_error_naming_the_key(tmp_path):
    d = tmp_path / "node"
    cli.init_node(d, "node-1", hsm=SoftHSMSetup(d / "hsm"), listen="127.0.0.1:1",
                  url="https://127.0.0.1:1", paillier_bits=2048)
    info = json.loads((d / "node-info.json").read_text())
    write_toml(d / "cluster.toml", {"cluster": {"id": "c"}, "nodes": [dict(info, index=0)],
                                    "users": []})
    load_node_config(d / "node.toml")  # as init wrote it
    m = tomllib.loads((d / "node.toml").read_text())
    m["hsm"]["pin"] = "1234"
    write_toml(d / "node.toml", m)
    with pytest.raises(ConfigError) as e:
        load_node_config(d / "node.toml")
    assert str(e.value) == (
        f"{d / 'node.toml'}: [hsm] pin: the PIN is never read from the configuration; set "
        "pin_env (an environment variable) or pin_file (a file outside the node's data "
        "directory)")


def test_a_node_toml_without_a_token_label_is_a_config_error_naming_it():
    """(was a TypeError from the dataclass: HSMConfig.__init__() missing 'token_label')"""
    with pytest.raises(HSMConfigError, match=r"^\[hsm\] token_label: required \(the label of the node's token\)$"):
        HSMConfig.from_mapping({"pin_env": "NODE_PIN"})
