"""Audit-log truncation (issue 12, item 4): an export cut at its end, stripped of its
checkpoints or cut at an older checkpoint fails `appliance audit verify` by name, against the
checkpoints the peers witnessed (the anchor document of GET /v1/audit/checkpoints).

In process: three audit logs with software identity keys; node-2 and node-3 witness
node-1's checkpoints as the nodes' co-signing loop has them do."""

from __future__ import annotations

import json

import pytest

from appliance.audit import anchor as AA
from appliance.audit import Checkpoint
from appliance.canonical import canonical_json
from appliance.cli import main as cli_main
from tests.node.test_audit import Node, fill, idx_of, make_log

IDS = ("node-1", "node-2", "node-3")


@pytest.fixture
def nodes():
    return {n: Node(n) for n in IDS}


@pytest.fixture
def keys(nodes):
    return {n: v.public for n, v in nodes.items()}


def _cosign(logs, keys, node="node-1"):
    """What _cosign_pending does: every peer witnesses every checkpoint and co-signs it."""
    for cp in logs[node].checkpoints():
        for peer in IDS:
            if peer != node and peer not in cp.cosignatures:
                logs[node].add_cosignature(cp.seq, peer, logs[peer].witness(cp, keys), keys)


@pytest.fixture
def world(tmp_path, nodes, keys):
    """node-1's log: 14 entries, checkpoints at 4, 8, 12 (witnessed by both peers), then two
    more entries not checkpointed yet (a live node). Returns (export lines, anchor files,
    cluster.toml)."""
    logs = {n: make_log(tmp_path / f"{n}.db", nodes, node=n) for n in IDS}
    fill(logs["node-1"], 14)
    _cosign(logs, keys)
    lines = list(logs["node-1"].export_lines())
    anchors = []
    for peer in ("node-2", "node-3"):
        f = tmp_path / f"anchor-{peer}.json"
        f.write_bytes(canonical_json(AA.anchor_document(logs[peer], IDS)))
        anchors.append(f)
    cluster = tmp_path / "cluster.toml"
    cluster.write_text('[cluster]\nid = "c"\n' + "".join(
        f'[[nodes]]\nid = "{n}"\nindex = {i}\nidentity_key = "{k.hex()}"\n'
        for i, (n, k) in enumerate(keys.items())))
    for log in logs.values():
        log._own.conn.close()  # no close(): that would checkpoint the live head
    return lines, anchors, cluster


def _verify(tmp_path, capsys, lines, cluster, *extra: str) -> tuple[int, str, str]:
    f = tmp_path / "audit.jsonl"
    f.write_bytes(b"\n".join(lines) + b"\n")
    capsys.readouterr()
    code = cli_main(["audit", "verify", str(f), "--cluster", str(cluster), "--node", "node-1",
                     *extra])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _with_anchors(anchors) -> list[str]:
    return [a for f in anchors for a in ("--anchor", str(f))]


def _cp_lines(lines):
    return [i for i, ln in enumerate(lines) if ln.startswith(b'{"checkpoint"')]


def _subjects(lines) -> set[str]:
    return {json.loads(ln)["entry"]["subject"] for ln in lines if ln.startswith(b'{"entry"')}


# ------------------------------------------------------------------------- the cuts, named


def test_complete_export_verifies_against_the_anchors(tmp_path, capsys, world):
    lines, anchors, cluster = world
    code, out, _ = _verify(tmp_path, capsys, lines, cluster, *_with_anchors(anchors))
    assert code == 0, out
    assert out.startswith("OK: node node-1, 14 entries")
    assert "reaches the newest witnessed checkpoint (entry 12, witnessed by node-2" in out
    assert "entries 13..14 are not witnessed yet" in out


def test_cut_tail_is_truncated_before_checkpoint(tmp_path, capsys, world):
    lines, anchors, cluster = world
    # drop the newest entries and their checkpoints: entries 10.. (the approval of req_0008,
    # a session, ...) and the checkpoint at 12
    cut = lines[: idx_of(lines, 10)]
    assert "req_0008" in _subjects(lines) and "sess_10" not in _subjects(cut)
    code, out, _ = _verify(tmp_path, capsys, cut, cluster, *_with_anchors(anchors))
    assert code == 7
    assert out.startswith("FAIL: truncated_before_checkpoint: the export ends at entry 9 but "
                          f"node-2 ({anchors[0]}) witnessed node-1's checkpoint at entry 12"), out
    assert "checkpoint at entry 12" in out


def test_cut_at_an_older_checkpoint_is_truncated_before_checkpoint(tmp_path, capsys, world):
    lines, anchors, cluster = world
    cut = lines[: _cp_lines(lines)[0] + 1]  # entries 1..4 and the checkpoint at 4
    code, out, _ = _verify(tmp_path, capsys, cut, cluster, *_with_anchors(anchors))
    assert code == 7
    assert out.startswith("FAIL: truncated_before_checkpoint: the export ends at entry 4 "), out


def test_stripped_checkpoints_are_checkpoint_missing(tmp_path, capsys, world):
    lines, anchors, cluster = world
    stripped = [ln for ln in lines if not ln.startswith(b'{"checkpoint"')]
    code, out, _ = _verify(tmp_path, capsys, stripped, cluster, *_with_anchors(anchors))
    assert code == 7
    assert out.startswith(f"FAIL: checkpoint_missing: node-2 ({anchors[0]}) witnessed "
                          "node-1's checkpoint at entry 12, but the export has no checkpoint "
                          "there"), out


def test_stripped_checkpoints_and_cut_tail_is_truncated(tmp_path, capsys, world):
    lines, anchors, cluster = world
    cut = [ln for ln in lines[: idx_of(lines, 11)] if not ln.startswith(b'{"checkpoint"')]
    code, out, _ = _verify(tmp_path, capsys, cut, cluster, *_with_anchors(anchors))
    assert code == 7 and out.startswith("FAIL: truncated_before_checkpoint: the export ends at "
                                        "entry 10 "), out


def test_rewritten_log_is_checkpoint_missing(tmp_path, capsys, nodes, keys, world):
    """node-1 rebuilt its log from entry 1 (same key, other content): a valid chain with valid
    checkpoints, but the head at 12 is not the one the peers witnessed."""
    _, anchors, cluster = world
    fork = make_log(tmp_path / "fork.db", nodes, node="node-1")
    fill(fork, 2)
    fork.append("initiator", "sign_request", key="key_2", subject="other", decision="pending")
    fill(fork, 11)
    lines = list(fork.export_lines())
    code, out, _ = _verify(tmp_path, capsys, lines, cluster, *_with_anchors(anchors))
    assert code == 7
    assert out.startswith(f"FAIL: checkpoint_missing: node-2 ({anchors[0]}) witnessed "
                          "node-1's checkpoint at entry 12 with another head"), out


# ------------------------------------------------------------------------- the default


def test_default_requires_an_anchor(tmp_path, capsys, world):
    """Old code: a cut export verified OK with no flag at all."""
    lines, _, cluster = world
    cut = lines[: idx_of(lines, 10)]
    code, out, _ = _verify(tmp_path, capsys, cut, cluster)
    assert code == 2
    assert out.startswith("error: anchor_required: give --anchor FILE"), out
    code, _, _ = _verify(tmp_path, capsys, cut, cluster, "--require-checkpoint")
    assert code == 2


def test_opting_out_warns_loudly(tmp_path, capsys, world):
    lines, _, cluster = world
    cut = lines[: idx_of(lines, 10)]
    code, out, err = _verify(tmp_path, capsys, cut, cluster, "--no-require-checkpoint")
    assert code == 0 and out.startswith("OK: node node-1, 9 entries"), out
    assert err.startswith("WARNING: --no-require-checkpoint: NOT checking") \
        and "will NOT be detected" in err


def test_no_witnessed_checkpoint_is_no_checkpoint(tmp_path, capsys, nodes, keys, world):
    lines, _, cluster = world
    quiet = make_log(tmp_path / "quiet.db", nodes, node="node-3")  # witnessed nothing
    f = tmp_path / "anchor-quiet.json"
    f.write_bytes(canonical_json(AA.anchor_document(quiet, IDS)))
    stripped = [ln for ln in lines if not ln.startswith(b'{"checkpoint"')]
    code, out, _ = _verify(tmp_path, capsys, stripped, cluster, "--anchor", str(f))
    assert code == 7
    assert out.startswith("FAIL: no_checkpoint: no checkpoint of node-1 witnessed by a peer"), out


def test_forged_anchor_is_named(tmp_path, capsys, nodes, world):
    lines, anchors, cluster = world
    doc = json.loads(anchors[0].read_bytes())
    w = next(w for w in doc["witnessed"] if w["checkpoint"]["node"] == "node-1")
    w["checkpoint"]["seq"] = 40  # claims a later checkpoint than there is: not node-1's
    anchors[0].write_bytes(canonical_json(doc))
    code, out, _ = _verify(tmp_path, capsys, lines, cluster, *_with_anchors(anchors))
    assert code == 7
    assert out.startswith(f"FAIL: anchor_forged: the checkpoint at entry 40 from node-2 "
                          f"({anchors[0]}) is not signed by node-1's key"), out


def test_two_witnessed_heads_are_checkpoint_conflict(tmp_path, capsys, nodes, world):
    lines, anchors, cluster = world
    doc = json.loads(anchors[1].read_bytes())
    w = next(w for w in doc["witnessed"] if w["checkpoint"]["node"] == "node-1")
    cp = Checkpoint("node-1", 12, "cd" * 32, w["checkpoint"]["time"], b"")
    cp = Checkpoint("node-1", 12, cp.head, cp.time, nodes["node-1"].sign(cp.digest()))
    doc["witnessed"] = [cp.to_json() if x is w else x for x in doc["witnessed"]]
    anchors[1].write_bytes(canonical_json(doc))
    code, out, _ = _verify(tmp_path, capsys, lines, cluster, *_with_anchors(anchors))
    assert code == 7 and out.startswith("FAIL: checkpoint_conflict: node-1 showed two heads for "
                                        "entry 12"), out


# ------------------------------------------------------------------------- the document


def test_anchor_document_holds_the_newest_per_peer_and_own(tmp_path, nodes, keys):
    logs = {n: make_log(tmp_path / f"{n}.db", nodes, node=n) for n in IDS}
    fill(logs["node-1"], 9)   # checkpoints 4, 8
    fill(logs["node-3"], 5)   # checkpoint 4
    _cosign(logs, keys, "node-1")
    _cosign(logs, keys, "node-3")
    fill(logs["node-2"], 4)   # its own checkpoint 4, not co-signed yet
    doc = AA.anchor_document(logs["node-2"], IDS)
    assert doc["type"] == AA.ANCHOR_TYPE and doc["node"] == "node-2" and doc["own"] is None
    assert [(w["checkpoint"]["node"], w["checkpoint"]["seq"]) for w in doc["witnessed"]] == [
        ("node-1", 8), ("node-3", 4)]
    own = AA.anchor_document(logs["node-1"], IDS)["own"]
    assert own["checkpoint"]["seq"] == 8 and sorted(own["cosignatures"]) == ["node-2", "node-3"]
    parsed = AA.parse_anchor_bytes(canonical_json(AA.anchor_document(logs["node-1"], IDS)))
    assert [(a.checkpoint.node, a.checkpoint.seq, a.source) for a in parsed] == [
        ("node-3", 4, "node-1"), ("node-1", 8, "node-1")]


@pytest.mark.parametrize("bad, what", [
    (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
    (b'{"type":"appliance/audit-anchor/v1","node":"n","witnessed":[[[[[[1]]]]]],"own":null}',
     "nested too deeply"),
    (b'{"type":"appliance/audit-anchor/v1","node":"../x","witnessed":[],"own":null}',
     "bad node id"),
    (b'{"type":"appliance/audit-anchor/v1","node":"n","witnessed":[],"own":null,"x":1}',
     "not an anchor document"),
    (b'{"type":"appliance/audit-anchor/v1","node":"n","witnessed":[{"a":1}],"own":null}',
     "witnessed[0]"),
    (b" " * (AA.MAX_ANCHOR_BYTES + 1), "larger than"),
])
def test_bad_anchor_files_are_refused(tmp_path, capsys, world, bad, what):
    lines, _, cluster = world
    with pytest.raises(AA.AnchorError, match=what.replace("[", r"\[").replace("]", r"\]")):
        AA.parse_anchor_bytes(bad)
    f = tmp_path / "bad-anchor.json"
    f.write_bytes(bad)
    code, out, _ = _verify(tmp_path, capsys, lines, cluster, "--anchor", str(f))
    assert code == 2 and out.startswith("error: ") and what.split("[")[0] in out, out
