"""Issue 15 item 8: node.toml, cluster.toml and the policy are decoded through typed schemas
(msgspec Structs that refuse unknown keys); every error names the file, the table and the
key; a policy whose rules no set of its users can meet is refused at load, naming the rule;
what `appliance init`, `cluster-config` and LocalCluster write (tomli-w) reads back."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from api.auth import generate_user_key
from appliance.cli import init_node
from appliance.cluster.policy_sync import base_policy
from appliance.config import ConfigError, dumps_toml, load_node_config, write_toml
from appliance.init_hsm import SoftHSMSetup
from appliance.policy import Policy, PolicyError
from appliance.testing import LocalCluster
from tests.cluster_fixtures import TEST_ONLY_PRIMES

ROOT = Path(__file__).resolve().parents[2]

CLUSTER = """[cluster]
id = "c"

[[nodes]]
id = "node-1"
index = 0
url = "https://127.0.0.1:1"
tls_cert = "x"
identity_key = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
transport_key = "046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c2964fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5"
"""
HSM = '[hsm]\ntoken_label = "t"\npin_env = "APPLIANCE_TEST_PIN"\n'


def _node(tmp_path: Path, node_toml: str, cluster: str = CLUSTER) -> Path:
    (tmp_path / "cluster.toml").write_text(cluster)
    (tmp_path / "node.toml").write_text(node_toml)
    return tmp_path / "node.toml"


def _refused(path: Path) -> str:
    with pytest.raises(ConfigError) as e:
        load_node_config(path)
    return str(e.value)


# -- node.toml -------------------------------------------------------------------------------

NODE_ERRORS = [
    # the typos: silently ignored before
    ('[node]\nid = "node-1"\npresign_pol = 2\n' + HSM,
     "[node] presign_pol: unknown key (did you mean presign_pool?)"),
    ('[node]\nid = "node-1"\nround_timeut_s = 5.0\n' + HSM,
     "[node] round_timeut_s: unknown key (did you mean round_timeout_s?)"),
    # a wrong type names the key (was: invalid literal for int() with base 10: 'two')
    ('[node]\nid = "node-1"\nworkers = "two"\n' + HSM, '[node] workers: expected int, got str "two"'),
    ('[node]\nid = "node-1"\nworkers = 0\n' + HSM, "[node] workers: expected int >= 1, got int 0"),
    ('[node]\nid = "node-1"\npresign_pool = -1\n' + HSM,
     "[node] presign_pool: expected int >= 0, got int -1"),
    ('[node]\nid = "node-1"\n' + HSM + '[frost]\npool = -1\n', "[frost] pool: expected int >= 0, got int -1"),
    ('[node]\nid = "node-1"\n' + HSM + '[frost]\npol = 2\n', "[frost] pol: unknown key (did you mean pool?)"),
    ('[node]\nid = "node-1"\nround_timeout_s = 0\n' + HSM,
     "[node] round_timeout_s: expected float > 0.0, got int 0"),
    ('[node]\nid = "node-1"\npaillier_bits = 1024\n' + HSM,
     "[node] paillier_bits: must be one of 2048, 3072, got int 1024"),
    ('[node]\nid = "node-1"\nlisten = "127.0.0.1:99999"\n' + HSM,
     '[node] listen: the port must be 1 to 65535, got str "127.0.0.1:99999"'),
    ('[node]\nid = "node/1"\n' + HSM,
     "[node] id: expected str matching regex '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$', got str \"node/1\""),
    ('[node]\nworkers = 2\n' + HSM, "[node] id: missing required key"),
    ('[node]\nid = "node-1"\n', "[hsm]: missing required table"),
    ('[node]\nid = "node-1"\n' + HSM + "[hsm.x]\na = 1\n",
     "[hsm] x: unknown key (known: token_label, pin_file, pin_env, module, softhsm_conf, identity_curve)"),
    ('[node]\nid = "node-1"\n' + HSM.replace('"t"', '"' + "t" * 33 + '"'),
     '[hsm] token_label: expected str of length <= 32, got str "' + "t" * 33 + '"'),
    ('polcy = "policy.toml"\n[node]\nid = "node-1"\n' + HSM,
     "polcy: unknown key (did you mean policy?)"),
    ('[node]\nid = "node-1"\n' + HSM + '[metric]\nauth = "none"\n',
     "[metric]: unknown table (did you mean [metrics]?)"),
    ('[node]\nid = "node-1"\n' + HSM + '[metrics]\nauth = "open"\n',
     '[metrics] auth: must be one of bearer, mtls, none, got str "open"'),
    ('[node]\nid = "node-1"\n' + HSM + "[http]\nidle_timeout_s = -1.5\n",
     "[http] idle_timeout_s: expected float > 0.0, got float -1.5"),
    ('[node]\nid = "node-1"\n' + HSM + "[primes]\npool_targets = 3\n",
     "[primes] pool_targets: unknown key (did you mean pool_target?)"),
    ('[node]\nid = "node-1"\n' + HSM + '[audit]\ncheckpoint_every = "10"\n',
     '[audit] checkpoint_every: expected int, got str "10"'),
    ('[node]\nid = "node-1"\n' + HSM + '[tls]\ncrt = "a.pem"\n',
     "[tls] crt: unknown key (did you mean cert?)"),
    ('[node]\nid = "node-2"\n' + HSM, "[node] id: 'node-2' is not a node of DIR/cluster.toml "
     "([[nodes]]: node-1)"),
]


@pytest.mark.parametrize("text, message", NODE_ERRORS, ids=[m.split(":")[0] + str(i) for i, (_, m) in
                                                           enumerate(NODE_ERRORS)])
def test_node_toml_errors_name_the_file_the_table_and_the_key(tmp_path, text, message):
    path = _node(tmp_path, text)
    assert _refused(path) == f"{path}: " + message.replace("DIR", str(tmp_path))


def test_every_default_stays_and_int_is_read_as_float(tmp_path):
    cfg = load_node_config(_node(tmp_path, '[node]\nid = "node-1"\nround_timeout_s = 5\n' + HSM))
    assert (cfg.round_timeout_s, type(cfg.round_timeout_s)) == (5.0, float)
    assert (cfg.listen_host, cfg.listen_port, cfg.db, cfg.paillier_bits, cfg.job_timeout_s,
            cfg.workers, cfg.presign_pool, cfg.prime_pool_target, cfg.lifecycle_interval_s,
            cfg.audit_checkpoint_every, cfg.metrics.auth, cfg.tls_cert, cfg.policy_file) == (
        "127.0.0.1", 8443, tmp_path / "node.db", 3072, 300.0, 2, 0, 2, 2.0, 100, "bearer",
        tmp_path / "tls/node.crt", None)
    assert cfg.hsm == {"token_label": "t", "pin_env": "APPLIANCE_TEST_PIN",
                       "module": "/usr/lib/softhsm/libsofthsm2.so", "identity_curve": "secp256k1"}
    assert cfg.frost_nonce_pool == 0  # no FROST nonce pool unless [frost] pool says so
    cfg = load_node_config(_node(tmp_path, '[node]\nid = "node-1"\n' + HSM + '[frost]\npool = 4\n'))
    assert cfg.frost_nonce_pool == 4


CLUSTER_ERRORS = [
    (CLUSTER.replace("tls_cert", "tls_crt"), "[[nodes]] #1 tls_crt: unknown key (did you mean tls_cert?)"),
    (CLUSTER.replace("index = 0", 'index = "0"'), '[[nodes]] #1 index: expected int, got str "0"'),
    (CLUSTER.replace('"https://127.0.0.1:1"', '"127.0.0.1:1"'),
     "[[nodes]] #1 url: expected str matching regex '^https://[^\\\\s/?#]+/?$', got str \"127.0.0.1:1\""),
    (CLUSTER.replace('identity_key = "02', 'identity_key = "0x02'),
     "[[nodes]] #1 identity_key: expected str matching regex '^0[23][0-9a-fA-F]{64}$', got str "
     '"0x0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"'),
    (CLUSTER.replace('transport_key = "046b17', 'transport_key = "046b18'),
     "[[nodes]] #1 transport_key: not a point on P-256"),
    (CLUSTER + CLUSTER.split("\n\n", 1)[1].replace("index = 0", "index = 1"),
     "[[nodes]] #2 id: 'node-1' is used by another node (node ids and indices must be unique)"),
    (CLUSTER.replace("[cluster]", "[clusters]"), "[clusters]: unknown table (did you mean [cluster]?)"),
    (CLUSTER + '\n[[user]]\nid = "a"\n', "user: unknown key (did you mean users?)"),
]


@pytest.mark.parametrize("text, message", CLUSTER_ERRORS)
def test_cluster_toml_errors_name_the_file_the_table_and_the_key(tmp_path, text, message):
    _node(tmp_path, '[node]\nid = "node-1"\n' + HSM, cluster=text)
    assert _refused(tmp_path / "node.toml") == f"{tmp_path / 'cluster.toml'}: {message}"


def test_the_cli_prints_the_error_on_one_line_and_exits_2(tmp_path):
    """`appliance serve` with a typo: refused before anything starts, as every ConfigError
    (a usage error: exit 2, `error: bad_config: ...`)."""
    path = _node(tmp_path, '[node]\nid = "node-1"\npresign_pol = 2\n' + HSM)
    r = subprocess.run([sys.executable, "-m", "appliance.cli", "serve", "--config", str(path)],
                       capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
    assert (r.returncode, r.stdout, r.stderr) == (
        2, "", f"error: bad_config: {path}: [node] presign_pol: unknown key (did you mean presign_pool?)\n")


# -- the policy ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pubs() -> dict[str, str]:
    return {u: generate_user_key("ed25519")[1].decode()
            for u in ("ini", "bob", "carol", "adm", "adm2", "both")}


def _policy(pubs, users: dict[str, list[str]], tables: str = "") -> str:
    out = '[policy]\ncluster_id = "c"\n'
    for uid, roles in users.items():
        out += f'\n[[users]]\nid = "{uid}"\nroles = {json.dumps(roles)}\npublic_key = """{pubs[uid]}"""\n'
    return out + tables


OK_USERS = {"ini": ["initiator"], "bob": ["approver"], "adm": ["admin"]}

POLICY_ERRORS = [
    # unknown keys and wrong types, by table
    (OK_USERS, "\n[signing]\napprovalz = []\n", "[signing] approvalz: unknown key (did you mean approvals?)"),
    (OK_USERS, '\n[signing]\napprovals = [{ roles = ["approver"], cout = 2 }]\n',
     "[signing] approvals[0].cout: unknown key (did you mean count?)"),
    (OK_USERS, '\n[signing.keys."key_1"]\nmax_signature = 3\n',
     "[signing.keys.key_1] max_signature: unknown key (did you mean max_signatures?)"),
    (OK_USERS, '\n[key_changes]\nquorum = "1"\n', '[key_changes] quorum: expected int, got str "1"'),
    (OK_USERS, "\n[policy_changes]\nquorum = 1\n",
     "[policy_changes]: unknown table (did you mean [policy_change]?)"),
    ({**OK_USERS, "carol": ["approver"]}, "",  # a key spelled wrong in [[users]]: see below
     None),
    # rules nobody can meet
    (OK_USERS, '\n[signing]\napprovals = [{ roles = ["approver"], count = 2 }]\n',
     '[signing] approvals: signing needs 2 approvers with role "approver" but only 1 user holds '
     "it (bob)"),
    (OK_USERS, '\n[signing]\napprovals = [{ roles = ["treasurer"], count = 1 }]\n',
     '[signing] approvals: signing needs 1 approver with role "treasurer" but no user has it'),
    ({"bob": ["approver"], "adm": ["admin"]}, "",
     '[signing] initiator_roles: signing needs an initiator with role "initiator" but no user has it'),
    ({**OK_USERS, "adm2": ["admin"]}, "\n[key_changes]\nquorum = 3\n",
     '[key_changes] quorum: 3 distinct users with role "admin" are needed but only 2 users hold it '
     "(adm, adm2): the cluster could never change its keys"),
    (OK_USERS, "\n[policy_change]\nquorum = 2\n",
     '[policy_change] quorum: 2 distinct users with role "admin" are needed but only 1 user holds '
     "it (adm): the cluster could never change its policy"),
    ({"both": ["initiator", "approver"], "bob": ["approver"], "adm": ["admin"]},
     '\n[signing]\napprovals = [{ roles = ["approver"], count = 2 }]\n',
     "[signing] approvals: signing needs 2 approvers besides the initiator (who may not approve "
     "their own request), but with any initiator (both) at most 1 remains"),
    ({"ini": ["initiator"], "both": ["approver", "admin"], "adm": ["admin"]},
     '\n[signing]\napprovals = [{ roles = ["approver"], count = 1 }, { roles = ["admin"], count = 2 }]\n',
     "[signing] approvals: signing needs 3 distinct approvers across its groups (one person counts "
     "once) but at most 2 can be found among the users"),
    (OK_USERS, '\n[signing.keys."key_1"]\napprovals = [{ roles = ["approver"], count = 3 }]\n',
     '[signing.keys.key_1] approvals: signing needs 3 approvers with role "approver" but only 1 '
     "user holds it (bob)"),
]


@pytest.mark.parametrize("users, tables, message",
                         [e for e in POLICY_ERRORS if e[2] is not None])
def test_policy_errors_name_the_file_the_table_and_the_key_or_rule(tmp_path, pubs, users, tables,
                                                                    message):
    path = tmp_path / "policy.toml"
    path.write_text(_policy(pubs, users, tables))
    with pytest.raises(PolicyError) as e:
        Policy.load(path)
    assert str(e.value) == f"{path}: {message}"


def test_policy_user_typo_and_a_satisfiable_policy(tmp_path, pubs):
    text = _policy(pubs, {**OK_USERS, "both": ["initiator", "approver"], "carol": ["approver"]},
                   '\n[signing]\napprovals = [{ roles = ["approver"], count = 2 }]\n')
    pol = Policy.from_toml(text)  # both initiates: bob and carol approve; ini: any two of three
    assert Policy.from_toml(pol.to_toml()).hash == pol.hash
    with pytest.raises(PolicyError) as e:
        Policy.from_toml(text.replace("roles = [\"approver\"]\npublic", "role = [\"approver\"]\npublic", 1))
    assert str(e.value) == "[[users]] #2 role: unknown key (did you mean roles?)"


def test_a_node_whose_policy_nobody_can_meet_does_not_start(tmp_path, pubs):
    """The node's own loading (cluster.toml's tables, and a policy file node.toml names),
    and `appliance serve`: exit 2 (a usage error) naming the file and the rule."""
    cluster = CLUSTER + _policy(pubs, OK_USERS, "\n[policy_change]\nquorum = 2\n").replace(
        '[policy]\ncluster_id = "c"\n', "")
    path = _node(tmp_path, '[node]\nid = "node-1"\n' + HSM, cluster=cluster)
    rule = ('[policy_change] quorum: 2 distinct users with role "admin" are needed but only 1 '
            "user holds it (adm): the cluster could never change its policy")
    with pytest.raises(ConfigError) as e:
        base_policy(load_node_config(path))
    assert str(e.value) == f"{tmp_path / 'cluster.toml'}: {rule}"
    (tmp_path / "policy.toml").write_text(_policy(pubs, OK_USERS, "\n[policy_change]\nquorum = 2\n"))
    path.write_text('policy = "policy.toml"\n' + path.read_text())
    r = subprocess.run([sys.executable, "-m", "appliance.cli", "serve", "--config", str(path)],
                       capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
    assert (r.returncode, r.stderr.splitlines()[-1]) == (2, f"error: bad_config: {tmp_path / 'policy.toml'}: {rule}")
    assert "Traceback" not in r.stderr


# -- what the appliance writes reads back ----------------------------------------------------


def test_write_toml_round_trips_with_tomli_w(tmp_path):
    m = {"cluster": "cluster.toml", "node": {"id": "n", "skip": None, "paths": [Path("a/b")]},
         "nodes": [{"id": "a", "tls_cert": "-----BEGIN\nx\n-----END\n", "k": 'q"\\\x01'},
                   {"id": "b", "tls_cert": "crlf\r\nkept"}]}
    write_toml(tmp_path / "x.toml", m)
    assert tomllib.loads((tmp_path / "x.toml").read_text()) == {
        "cluster": "cluster.toml", "node": {"id": "n", "paths": ["a/b"]}, "nodes": m["nodes"]}
    assert (tmp_path / "x.toml").stat().st_mode & 0o777 == 0o600
    with pytest.raises(ConfigError):
        dumps_toml({"a": [1, None]})


def test_what_init_and_local_cluster_write_reads_back(tmp_path):
    """LocalCluster.setup() (real `init_node` on SoftHSM2 tokens, cluster.toml, policy.toml,
    node.toml with its overrides) loads through the schemas, settings as written."""
    lc = LocalCluster(nodes=2, threshold=2, paillier_bits=2048, prime_file=TEST_ONLY_PRIMES,
                      base_dir=tmp_path / "lc", presign_pool=3, metrics_auth="mtls",
                      users={"approver2": ["approver"]},
                      policy={"signing": {"approvals": [{"roles": ["approver"], "count": 2}]}},
                      node_extra={0: {"node": {"lifecycle_interval_s": 0.5},
                                      "audit": {"checkpoint_every": 10}}})

    async def build() -> None:
        try:
            await lc.setup()
        finally:
            await lc.close()

    asyncio.run(build())
    for i, d in enumerate(lc.data_dirs):
        cfg = load_node_config(d / "node.toml")
        written = tomllib.loads((d / "node.toml").read_text())
        assert (cfg.node_id, cfg.paillier_bits, cfg.presign_pool, cfg.http.max_connections_per_client,
                cfg.metrics.auth, cfg.prime_file, cfg.policy_file) == (
            lc.node_ids[i], 2048, 3, 1024, "mtls", d / "test-only-primes.json", d / "policy.toml")
        assert (cfg.lifecycle_interval_s, cfg.audit_checkpoint_every) == ((0.5, 10) if i == 0 else (2.0, 100))
        assert written["hsm"]["softhsm_conf"] == "hsm/softhsm2.conf" and cfg.hsm_config().token_label
        pol = base_policy(cfg)
        assert pol.signing.approvals[0].count == 2 and pol.user("approver2") is not None
        assert [n.id for n in cfg.cluster.nodes] == lc.node_ids
    # init alone, as `appliance init --softhsm` writes it
    d = tmp_path / "one"
    info = init_node(d, "node-9", hsm=SoftHSMSetup(d / "hsm"), listen="127.0.0.1:1",
                     url="https://127.0.0.1:1", paillier_bits=2048)
    assert info["id"] == "node-9"
    keys = tmp_path / "keys"
    keys.mkdir()
    users = []
    for uid, role in (("ini", "initiator"), ("bob", "approver"), ("adm", "admin")):
        (keys / f"{uid}.pub.pem").write_bytes(generate_user_key("ed25519")[1])
        users += ["--user", f"{uid}:{role}:{keys / f'{uid}.pub.pem'}"]
    r = subprocess.run([sys.executable, "-m", "appliance.cli", "cluster-config", "--id", "c", "--out",
                        str(d / "cluster.toml"), "--node-info", str(d / "node-info.json"), *users],
                       capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
    assert r.returncode == 0, r.stderr
    cfg = load_node_config(d / "node.toml")
    assert (cfg.node_id, cfg.presign_pool, cfg.workers, cfg.metrics.bearer_token_file) == (
        "node-9", 2, 2, d / "metrics.token")
    assert cfg.me.tls_cert == info["tls_cert"] and cfg.me.identity_key.hex() == info["identity_key"]
    assert sorted(u.id for u in base_policy(cfg).users) == ["adm", "bob", "ini"]
