"""Node hardening (issue 12, items 8 and 9): a node's state is its user's only (directories
0700, files 0600) after ``appliance init`` and after serving and signing, whatever the umask
it was started with; node certificates are leaf certificates; an outsider learns nothing
from the 401 about which user ids exist; ``/metrics`` needs credentials by default."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_asyncio

from appliance.fsmodes import mode_violations, tighten_tree
from appliance.testing import LocalCluster
from tests.cluster_fixtures import TEST_ONLY_PRIMES, check_signature, cluster_marks, digest_of

ROOT = Path(__file__).resolve().parent.parent
PERMISSIVE_UMASK = 0o022  # an operator's usual shell


def _appliance(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("SOFTHSM2_CONF", None)
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], capture_output=True, text=True,
                          timeout=120, env=env, cwd=ROOT, umask=PERMISSIVE_UMASK)


# -- item 8: file modes ----------------------------------------------------------------------


@pytest.mark.hsm
def test_init_leaves_only_private_files(tmp_path):
    d = tmp_path / "state" / "n1"
    p = _appliance("init", "--dir", str(d), "--node-id", "node-1", "--listen", "127.0.0.1:8441",
                   "--paillier-bits", "2048")
    assert p.returncode == 0, p.stderr
    for item in ("node.toml", "node-info.json", "tls/node.key", "tls/node.crt", "hsm/softhsm2.conf",
                 "hsm/node-1.pin", "hsm/tokens"):
        assert (d / item).exists(), item
    assert any((d / "hsm" / "tokens").rglob("*.object"))
    assert mode_violations(tmp_path / "state") == []


def test_tighten_tree_fixes_state_of_an_older_release(tmp_path):
    (tmp_path / "tls").mkdir(mode=0o755)
    (tmp_path / "node.db").write_bytes(b"x")
    (tmp_path / "tls" / "node.key").write_bytes(b"k")
    os.chmod(tmp_path, 0o755)
    os.chmod(tmp_path / "node.db", 0o644)
    os.chmod(tmp_path / "tls" / "node.key", 0o640)
    assert mode_violations(tmp_path) == [(".", "0o755"), ("node.db", "0o644"), ("tls", "0o755"),
                                         ("tls/node.key", "0o640")]
    assert len(tighten_tree(tmp_path)) == 4
    assert mode_violations(tmp_path) == []


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster():
    old = os.umask(PERMISSIVE_UMASK)  # the node processes must not depend on their parent's umask
    try:
        c = LocalCluster(nodes=2, threshold=2, paillier_bits=2048, prime_file=TEST_ONLY_PRIMES,
                         round_timeout=20.0, job_timeout=120.0)
        await c.__aenter__()
    finally:
        os.umask(old)
    try:
        yield c
    finally:
        await c.close()


def on_cluster(test):
    for mark in cluster_marks("node-hardening"):
        test = mark(test)
    return test


@on_cluster
async def test_state_is_private_after_serving_and_signing(cluster):
    key = await cluster.client("admin").create_key(threshold=2)
    digest = digest_of("hardening")
    req = await cluster.client("initiator").request_signature(key["key_id"], digest)
    await cluster.client("approver", node=1).approve(req["request_id"])
    done = await cluster.client("initiator").wait_signature(req["request_id"], timeout=120)
    check_signature(key["public_key"], digest, done["signature"])
    for d in cluster.data_dirs:  # while the nodes run: the WAL files are there
        names = {str(p.relative_to(d)) for p in d.rglob("*")}
        assert {"node.db", "node.db-wal", "audit.db", "audit.db-wal", "node.log", "node.toml",
                "cluster.toml", "policy.toml", "tls/node.key", "hsm/softhsm2.conf"} <= names, names
        assert any(n.startswith("hsm/tokens/") and n.endswith(".object") for n in names)
        assert mode_violations(d) == [], d
    assert mode_violations(cluster.base_dir) == []  # users/ (their private keys) too
