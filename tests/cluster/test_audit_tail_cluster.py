"""Audit-log truncation on a real 2-of-3 cluster (issue 12, item 4): sign (request, approval,
session, ``signed``), take the anchors from the peers' auditor route GET
/v1/audit/checkpoints, export node-1's log, and cut it three ways; `appliance audit verify`
names each cut."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import pytest

from api.client import ApplianceAPIError
from appliance.audit import ANCHOR_TYPE
from appliance.cli import main as cli_main
from tests.cluster_fixtures import cluster_fixture, cluster_marks, digest_of

pytestmark = cluster_marks("audit-tail")

EVERY = 3  # a checkpoint every 3 entries, so that one covers the signature soon
cluster = cluster_fixture(node_extra={i: {"audit": {"checkpoint_every": EVERY}} for i in range(3)})
ROOT = Path(__file__).resolve().parents[2]


def _entries(lines: list[bytes]) -> list[dict]:
    return [json.loads(ln)["entry"] for ln in lines if ln.startswith(b'{"entry"')]


def _witnessed_seq(doc: dict, node: str) -> int:
    return max((w["checkpoint"]["seq"] for w in doc["witnessed"]
                if w["checkpoint"]["node"] == node), default=0)


async def _anchors_past(cluster, seq: int, timeout: float = 60.0) -> list[bytes]:
    """The anchor documents of node-2 and node-3 once both witnessed a checkpoint of node-1
    at or after ``seq`` and both have an own checkpoint co-signed by a peer (co-signing runs
    in the background every 2 s, so a node can witness before its own is co-signed)."""
    clients = [cluster.client("auditor", node=i) for i in (1, 2)]
    deadline = time.monotonic() + timeout
    while True:
        raws = [await c.audit_checkpoints(raw=True) for c in clients]
        docs = [json.loads(r) for r in raws]
        if all(_witnessed_seq(d, "node-1") >= seq and d["own"] is not None
               and d["own"]["cosignatures"] for d in docs):
            return raws
        assert time.monotonic() < deadline, docs
        await asyncio.sleep(0.5)


def _verify(capsys, tmp_path: Path, cluster, lines: list[bytes], anchors: list[Path]):
    f = tmp_path / "export.jsonl"
    f.write_bytes(b"\n".join(lines) + b"\n")
    capsys.readouterr()
    code = cli_main(["audit", "verify", str(f), "--cluster",
                     str(cluster.data_dirs[0] / "cluster.toml"), "--node", "node-1",
                     *[x for a in anchors for x in ("--anchor", str(a))]])
    return code, capsys.readouterr().out


async def test_cut_tails_are_named_against_the_auditor_route(cluster, tmp_path, capsys):
    key = await cluster.client("admin").create_key(threshold=2)
    req = await cluster.client("initiator").request_signature(key["key_id"],
                                                              digest_of("audit tail"))
    rid = req["request_id"]
    await cluster.client("approver").approve(rid)
    await cluster.client("initiator").wait_signature(rid, timeout=120)
    auditor = cluster.client("auditor", node=0)
    signed = next(e["seq"] for e in _entries((await auditor.audit_export()).splitlines())
                  if e["subject"] == rid and e["action"] == "signed")
    # EVERY refused requests (each audited) make node-1 checkpoint past the signature
    for _ in range(EVERY):
        with pytest.raises(ApplianceAPIError) as ei:
            await auditor.request_signature(key["key_id"], digest_of("not an initiator"))
        assert ei.value.status == 403
    raws = await _anchors_past(cluster, signed)
    anchors = []
    for i, raw in zip((2, 3), raws):
        doc = json.loads(raw)
        assert doc["type"] == ANCHOR_TYPE and doc["node"] == f"node-{i}"
        assert doc["own"] is not None and doc["own"]["cosignatures"], doc
        anchors.append(tmp_path / f"anchor-node-{i}.json")
        anchors[-1].write_bytes(raw)
    lines = (await auditor.audit_export()).splitlines()  # taken after the anchors
    entries = _entries(lines)
    ours = [e for e in entries if e["subject"] == rid]
    approval = min(e["seq"] for e in ours if e["actor"] == "approver")
    assert {"signed"} <= {e["action"] for e in ours if e["seq"] > approval}

    code, out = _verify(capsys, tmp_path, cluster, lines, anchors)
    assert code == 0 and out.startswith("OK: node node-1") and "newest witnessed" in out, out

    def idx(seq: int) -> int:
        return next(i for i, ln in enumerate(lines) if ln.startswith(b'{"entry"')
                    and json.loads(ln)["entry"]["seq"] == seq)

    # 1. the tail cut from the approval on (with the checkpoints after it)
    cut = lines[: idx(approval)]
    assert not [e for e in _entries(cut) if e["subject"] == rid and e["action"] == "signed"]
    code, out = _verify(capsys, tmp_path, cluster, cut, anchors)
    assert code == 7 and out.startswith(
        f"FAIL: truncated_before_checkpoint: the export ends at entry {approval - 1} but "), out
    # 2. every checkpoint stripped
    stripped = [ln for ln in lines if not ln.startswith(b'{"checkpoint"')]
    code, out = _verify(capsys, tmp_path, cluster, stripped, anchors)
    assert code == 7 and out.startswith("FAIL: checkpoint_missing: node-2 "), out
    assert "the export has no checkpoint there" in out
    # 3. cut right after an older checkpoint (before the approval): a clean-looking log
    older = max(i for i, ln in enumerate(lines[: idx(approval)])
                if ln.startswith(b'{"checkpoint"'))
    at_older = lines[: older + 1]
    code, out = _verify(capsys, tmp_path, cluster, at_older, anchors)
    assert code == 7 and out.startswith("FAIL: truncated_before_checkpoint: "), out
    # the same cut against the route itself: `appliance audit verify --anchor-url` as the
    # auditor (the nodes' certificates pinned from cluster.toml)
    f = tmp_path / "at-older.jsonl"
    f.write_bytes(b"\n".join(at_older) + b"\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "appliance.cli", "audit", "verify", str(f), "--cluster",
        str(cluster.data_dirs[0] / "cluster.toml"), "--node", "node-1",
        "--anchor-url", cluster.urls[1], "--anchor-url", cluster.urls[2],
        "--user", "auditor", "--key", str(cluster.base_dir / "users" / "auditor.pem"),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 7, (stdout + stderr).decode()
    assert stdout.decode().startswith("FAIL: truncated_before_checkpoint: "), stdout


async def test_checkpoint_route_is_for_auditors_and_listed(cluster):
    with pytest.raises(ApplianceAPIError) as ei:
        await cluster.client("initiator").audit_checkpoints()
    assert (ei.value.status, ei.value.code) == (403, "forbidden")
    spec = await cluster.client("auditor").openapi()
    assert "get" in spec["paths"]["/v1/audit/checkpoints"]
