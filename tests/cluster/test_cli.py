"""The `appliance` command: `demo --json --keep` end to end (real node processes, fresh primes,
2048-bit Paillier to keep it short; the request is approved as the default policy asks),
`verify`, and `audit verify` over the kept nodes' audit logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster_fixtures import check_signature

pytestmark = pytest.mark.hsm

ROOT = Path(__file__).resolve().parents[2]


def _appliance(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("SOFTHSM2_CONF", None)
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    keep = tmp_path_factory.mktemp("demo") / "state"
    p = _appliance("demo", "--nodes", "3", "--threshold", "2", "--json", "--keep", str(keep),
                   "--paillier-bits", "2048")
    return keep, p


def test_demo_json_keep(demo):
    keep, p = demo
    assert p.returncode == 0, p.stderr[-3000:]
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    for field in ("public_key", "digest", "signature", "nodes", "threshold", "timings_ms"):
        assert field in summary, field
    assert summary["nodes"] == 3 and summary["threshold"] == 2
    assert set(summary["signature"]) >= {"der", "r", "s", "recovery_id"}
    assert summary["verified"] == {"libsecp256k1": True, "openssl": True}
    check_signature(summary["public_key"], bytes.fromhex(summary["digest"]), summary["signature"])
    assert {"keygen", "sign", "total"} <= set(summary["timings_ms"])
    # the readable summary went to stderr, the JSON is the last line of stdout
    assert "verified independently" in p.stderr and "approved by approver" in p.stderr
    # progress on stderr, plain lines (not a terminal): the prime pools, then the key's phases
    lines = p.stderr.splitlines()
    assert "\r" not in p.stderr
    assert lines.index("    primes 6/6 (node-1 2/2, node-2 2/2, node-3 2/2)") < \
        next(i for i, ln in enumerate(lines) if ln.startswith("    keygen round 3/3 done in ")) < \
        next(i for i, ln in enumerate(lines) if ln.startswith("    aux round 3/3 done in ")), p.stderr
    assert "    commit 1/1" in lines, p.stderr
    # --keep: each node's state is left in DIR/<node-id>/
    for nid in ("node-1", "node-2", "node-3"):
        d = keep / nid
        for item in ("node.toml", "cluster.toml", "node.db", "hsm/softhsm2.conf", "hsm/tokens", "tls/node.crt"):
            assert (d / item).exists(), d / item
    # the independent verifier agrees; a changed digest does not verify
    sig = summary["signature"]
    ok = _appliance("verify", "--public-key", summary["public_key"], "--digest", summary["digest"],
                    "--signature", sig["der"])
    assert ok.returncode == 0 and json.loads(ok.stdout)["valid"] is True
    bad = _appliance("verify", "--public-key", summary["public_key"], "--digest", "00" * 32,
                     "--signature", sig["der"])
    assert bad.returncode == 7 and json.loads(bad.stdout)["valid"] is False


def test_audit_verify_names_the_altered_entry(demo, tmp_path):
    """Each kept node's audit log, exported as GET /v1/audit serves it, verifies against the
    cluster's node keys; one altered entry makes `appliance audit verify` fail naming it."""
    from appliance.audit import AuditLog

    keep, p = demo
    assert p.returncode == 0, p.stderr[-3000:]
    for nid in ("node-1", "node-2", "node-3"):
        d = keep / nid
        log = AuditLog(d / "node.db", nid)  # the audit log lives in the node's database
        export = tmp_path / f"{nid}.jsonl"
        log.export(export)
        log.close()
        # the demo's nodes stop together, so no peer need have witnessed a checkpoint: check
        # the log as left after shutdown (its last entry covered by the node's own checkpoint),
        # without the peers' anchors (tests/cluster/test_audit_tail_cluster.py checks those), loudly
        ok = _appliance("audit", "verify", str(export), "--cluster", str(d / "cluster.toml"),
                        "--node", nid, "--no-require-checkpoint", "--require-final-checkpoint",
                        timeout=60)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "checkpoint" in ok.stdout and "will NOT be detected" in ok.stderr
    lines = export.read_bytes().splitlines()
    entry_lines = [i for i, ln in enumerate(lines) if ln.startswith(b'{"entry"')]
    i = entry_lines[len(entry_lines) // 2]
    obj = json.loads(lines[i])
    seq = obj["entry"]["seq"]
    lines[i] = lines[i].replace(b'"actor":"', b'"actor":"x', 1)
    bad = tmp_path / "altered.jsonl"
    bad.write_bytes(b"\n".join(lines) + b"\n")
    r = _appliance("audit", "verify", str(bad), "--cluster", str(keep / "node-3" / "cluster.toml"),
                   "--no-require-checkpoint", timeout=60)
    assert r.returncode == 7 and "FAIL" in r.stdout and str(seq) in r.stdout, r.stdout
