"""The CLI pieces of the by-hand flow, in process: `cluster-config --policy` (the policy's rules
written into cluster.toml, checked as the nodes read them), `--field`, the exit code of a
refused call; and the policy api/README.md's by-hand flow shows is the compose file's."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from api.auth import generate_user_key
from api.client import ApplianceAPIError
from appliance.cli import main
from appliance.cli_client import emit
from appliance.cli_errors import exit_code_of
from appliance.cli_errors import UsageError
from appliance.policy import Policy

ROOT = Path(__file__).resolve().parents[2]


def _setup(tmp_path: Path, roles: dict[str, str]) -> list[str]:
    infos = []
    for i in range(3):
        f = tmp_path / f"node-{i + 1}.json"
        f.write_text(json.dumps({"id": f"node-{i + 1}", "url": f"https://127.0.0.1:{8441 + i}",
                                 "tls_cert": "", "identity_key": "02" + "11" * 32,
                                 "transport_key": "02" + "22" * 32}))
        infos.append(str(f))
    users = []
    for uid, role in roles.items():
        _, pub = generate_user_key("ed25519")
        (tmp_path / f"{uid}.pub.pem").write_bytes(pub)
        users += ["--user", f"{uid}:{role}:{tmp_path / f'{uid}.pub.pem'}"]
    return ["cluster-config", "--out", str(tmp_path / "cluster.toml"), "--node-info", *infos, *users]


def test_cluster_config_writes_the_policy_files_rules(tmp_path):
    args = _setup(tmp_path, {"alice": "initiator", "bob": "approver", "admin": "admin"})
    assert main([*args, "--policy", str(ROOT / "docs" / "compose-policy.toml")]) == 0
    policy = Policy.load(tmp_path / "cluster.toml")
    assert policy.signing.allow_raw_digest is True
    assert policy.signing.approver_roles == frozenset({"approver"})
    text = (tmp_path / "cluster.toml").read_text()
    assert text.endswith((ROOT / "docs" / "compose-policy.toml").read_text())  # comments kept


def test_cluster_config_refuses_users_in_the_policy_file(tmp_path, capsys):
    args = _setup(tmp_path, {"admin": "admin"})
    pol = tmp_path / "policy.toml"
    pol.write_text('[signing]\nallow_raw_digest = true\n\n[[users]]\nid = "mallory"\n')
    assert main([*args, "--policy", str(pol)]) == 2
    assert capsys.readouterr().err == (
        f"error: bad_config: {pol}: only policy, signing, key_changes, policy_change tables belong in a policy "
        "file (users come from --user), not users\n")
    assert not (tmp_path / "cluster.toml").exists()


def test_cluster_config_refuses_a_quorum_nobody_can_reach(tmp_path, capsys):
    args = _setup(tmp_path, {"admin": "admin"})
    pol = tmp_path / "policy.toml"
    pol.write_text('[key_changes]\nroles = ["admin"]\nquorum = 2\n')
    assert main([*args, "--policy", str(pol)]) == 2
    assert capsys.readouterr().err == (
        f'error: bad_config: {pol}: [key_changes] quorum: 2 distinct users with role "admin" are needed but '
        "only 1 user holds it (admin): the cluster could never change its keys\n")
    assert not (tmp_path / "cluster.toml").exists()


def test_field_prints_one_field(capsys):
    class Args:
        field = "signature.der"

    emit(Args, {"signature": {"der": "3044"}, "status": "signed"})
    assert capsys.readouterr().out == "3044\n"
    Args.field = "signature.r"
    with pytest.raises(UsageError, match="^the answer has no field 'signature.r'$"):
        emit(Args, {"signature": {"der": "3044"}})


@pytest.mark.parametrize("status,code,exit_code", [
    (403, "missing_role", 3), (401, "unauthenticated", 3), (404, "not_found", 4),
    (503, "node_unreachable", 6), (409, "not_pending", 1), (503, "server_certificate_rejected", 3)])
def test_refused_calls_exit_with_the_design_codes(status, code, exit_code):
    assert exit_code_of(ApplianceAPIError(status, code, "x")) == exit_code


def test_the_by_hand_flow_and_the_compose_file_share_one_policy():
    readme = (ROOT / "api" / "README.md").read_text()
    shown = re.search(r"cat > policy\.toml <<'EOF'\n(.*?)EOF\n", readme, re.S)
    assert shown is not None, "api/README.md shows no policy.toml"
    assert shown.group(1) == (ROOT / "docs" / "compose-policy.toml").read_text()
    assert "--policy /etc/appliance/policy.toml" in (ROOT / "docker-compose.yml").read_text()
