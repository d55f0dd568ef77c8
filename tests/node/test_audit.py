"""Audit log: chain, export bytes, checkpoints and co-signatures, tamper detection naming the
entry, fail-closed writes, the secret guard."""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import threading

import coincurve
import pytest

from api.errors import error_status
from appliance import audit as A
from appliance.audit import command as AV
from appliance.audit import AuditFieldError, AuditLog, AuditUnavailable, verify_export
from appliance.canonical import canonical_json

T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        self.t += 0.25
        return self.t


class Node:
    """A software stand-in for a node's HSM identity key (secp256k1, low-S r||s)."""

    def __init__(self, node_id: str) -> None:
        self.id = node_id
        self.key = coincurve.PrivateKey()
        self.calls = 0
        self.fail = False

    def sign(self, digest: bytes) -> bytes:
        assert len(digest) == 32
        self.calls += 1
        if self.fail:
            raise RuntimeError("HSM unavailable")
        return self.key.sign_recoverable(digest, hasher=None)[:64]

    @property
    def public(self) -> bytes:
        return self.key.public_key.format()


@pytest.fixture
def nodes():
    return {n: Node(n) for n in ("node-1", "node-2", "node-3")}


@pytest.fixture
def keys(nodes):
    return {n: v.public for n, v in nodes.items()}


def make_log(path, nodes, node="node-1", every=4, **kw) -> AuditLog:
    return AuditLog(path, node, signer=nodes[node].sign, checkpoint_every=every, clock=Clock(),
                    **kw)


def fill(log: AuditLog, n: int) -> None:
    for i in range(n):
        kind = i % 4
        if kind == 0:
            log.append("initiator", "sign_request", key="key_1", subject=f"req_{i:04d}",
                       digest=hashlib.sha256(bytes([i])).digest(), decision="pending")
        elif kind == 1:
            log.append("approver", "approval", key="key_1", subject=f"req_{i - 1:04d}",
                       decision="allowed")
        elif kind == 2:
            log.append("node-2", "session_start", key="key_1", subject=f"sess_{i}",
                       decision="started")
        else:
            log.append("initiator", "policy_denied", key="key_1", subject=f"req_{i:04d}",
                       decision="denied", reason="path_not_allowed")


@pytest.fixture
def exported(tmp_path, nodes):
    log = make_log(tmp_path / "a.db", nodes)
    fill(log, 10)  # checkpoints after 4 and 8; close() adds one at 10
    log.close()
    log = make_log(tmp_path / "a.db", nodes)
    lines = list(log.export_lines())
    log.close()
    return lines


def entry_lines(lines):
    return [i for i, ln in enumerate(lines) if ln.startswith(b'{"entry"')]


def idx_of(lines, seq):
    return next(i for i in entry_lines(lines) if json.loads(lines[i])["entry"]["seq"] == seq)


def check(lines, keys, **kw):
    return verify_export(lines, keys, node_id="node-1", **kw)


# --------------------------------------------------------------------------- the chain


def test_chain_and_exact_bytes(tmp_path, nodes, keys):
    log = make_log(tmp_path / "a.db", nodes)
    fill(log, 9)
    rows = sqlite3.connect(tmp_path / "a.db").execute(
        "SELECT seq, entry, hash FROM audit_entries ORDER BY seq").fetchall()
    lines = list(log.export_lines())
    prev = A.GENESIS
    for (seq, raw, h), i in zip(rows, entry_lines(lines)):
        raw = bytes(raw)
        assert hashlib.sha256(raw).hexdigest() == h
        assert lines[i] == b'{"entry":' + raw + b',"hash":"' + h.encode() + b'"}'
        assert canonical_json(json.loads(raw)) == raw
        e = json.loads(raw)
        assert e["seq"] == seq and e["prev"] == prev and set(e) == set(A.ENTRY_FIELDS)
        prev = h
    assert json.loads(rows[0][1])["time"] == "2027-01-15T08:00:00.250Z"
    r = check(lines, keys)
    assert r.ok, r.summary()
    assert (r.entries, r.last_seq, r.checkpoints, r.head) == (9, 9, 2, log.head()[1])
    assert "OK" in r.summary()
    entries = log.entries(since=7)
    assert [e["seq"] for e in entries] == [8, 9] and entries[-1]["hash"] == log.head()[1]


def test_checkpoints_every_n_and_at_close(tmp_path, nodes, keys):
    log = make_log(tmp_path / "a.db", nodes, every=3)
    fill(log, 7)
    assert [c.seq for c in log.checkpoints()] == [3, 6]
    cp = log.close()
    assert cp.seq == 7
    log = make_log(tmp_path / "a.db", nodes, every=3)
    assert [c.seq for c in log.checkpoints()] == [3, 6, 7]
    assert log.close() is None  # nothing new
    lines = list(make_log(tmp_path / "a.db", nodes).export_lines())
    assert check(lines, keys, require_checkpoint=True).ok


def test_signer_failure_keeps_entries_and_retries(tmp_path, nodes, keys):
    log = make_log(tmp_path / "a.db", nodes, every=2)
    nodes["node-1"].fail = True
    fill(log, 3)  # checkpoint due at 2: fails, entry kept
    assert log.head()[0] == 3 and log.checkpoints() == []
    nodes["node-1"].fail = False
    fill(log, 1)
    assert [c.seq for c in log.checkpoints()] == [4]
    assert check(list(log.export_lines()), keys).ok


def test_reopen_continues_chain_and_refuses_other_node(tmp_path, nodes, keys):
    log = make_log(tmp_path / "a.db", nodes)
    fill(log, 3)
    log.close()
    log = make_log(tmp_path / "a.db", nodes)
    fill(log, 3)
    assert log.head()[0] == 6 and check(list(log.export_lines()), keys).ok
    log.close()
    with pytest.raises(A.AuditError, match="another node"):
        make_log(tmp_path / "a.db", nodes, node="node-2")


def test_concurrent_appends(tmp_path, nodes, keys):
    log = make_log(tmp_path / "a.db", nodes, every=25)
    other = make_log(tmp_path / "a.db", nodes, every=1000)  # a second connection, same file

    def work(lg, k):
        for i in range(40):
            lg.append("node-1", "session_end", subject=f"s{k}_{i}", decision="done")

    ts = [threading.Thread(target=work, args=(log if k % 2 else other, k)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert log.head()[0] == 160
    r = check(list(log.export_lines()), keys)
    assert r.ok and r.entries == 160, r.summary()


def test_append_only_in_the_database(tmp_path, nodes):
    log = make_log(tmp_path / "a.db", nodes)
    fill(log, 2)
    db = sqlite3.connect(tmp_path / "a.db")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE audit_entries SET hash = 'x' WHERE seq = 1")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("DELETE FROM audit_entries WHERE seq = 2")


def test_connection_given_by_the_node(tmp_path, nodes, keys):
    db = sqlite3.connect(tmp_path / "node.db", isolation_level=None, check_same_thread=False)
    db.execute("CREATE TABLE other (x)")  # the node's own tables live beside ours
    log = AuditLog(db, "node-1", signer=nodes["node-1"].sign, checkpoint_every=2)
    fill(log, 4)
    assert check(list(log.export_lines()), keys).ok
    with pytest.raises(A.AuditError):
        AuditLog(sqlite3.connect(tmp_path / "x.db"), "node-1")  # not autocommit


# --------------------------------------------------------------------------- tampering


def _edit(line: bytes, **changes) -> bytes:
    obj = json.loads(line)
    obj["entry"].update(changes)
    return canonical_json(obj)


def _rehash(line: bytes) -> bytes:
    obj = json.loads(line)
    obj["hash"] = hashlib.sha256(canonical_json(obj["entry"])).hexdigest()
    return canonical_json(obj)


@pytest.mark.parametrize("seq", [1, 5, 9, 10])
def test_edited_entry_is_named(exported, keys, seq):
    lines = list(exported)
    i = idx_of(lines, seq)
    lines[i] = _edit(lines[i], decision="allowed" if b'"denied"' in lines[i] else "denied")
    r = check(lines, keys)
    assert not r.ok and r.bad_seq == seq and f"entry {seq} altered" in r.error, r.error
    assert r.line == i + 1


@pytest.mark.parametrize("seq", [1, 5, 8, 10])
def test_edited_entry_with_recomputed_hash_is_named(exported, keys, seq):
    lines = list(exported)
    i = idx_of(lines, seq)
    lines[i] = _rehash(_edit(lines[i], actor="mallory"))
    r = check(lines, keys)
    assert not r.ok and r.bad_seq == seq and f"entry {seq} altered" in r.error, r.error


@pytest.mark.parametrize("seq", [2, 6])
def test_edited_prev_is_named(exported, keys, seq):
    lines = list(exported)
    i = idx_of(lines, seq)
    lines[i] = _rehash(_edit(lines[i], prev="ab" * 32))
    r = check(lines, keys)
    assert not r.ok and r.bad_seq == seq, r.error


@pytest.mark.parametrize("seq", [1, 2, 5, 9])
def test_deleted_entry_is_named(exported, keys, seq):
    lines = list(exported)
    del lines[idx_of(lines, seq)]
    r = check(lines, keys)
    assert not r.ok and r.bad_seq == seq and f"entry {seq} missing" in r.error, r.error


def test_deleted_last_entries_are_named(exported, keys):
    lines = list(exported)
    # drop entry 10 (its checkpoint stays): the checkpoint covers it
    cut = lines[: idx_of(lines, 10)] + lines[idx_of(lines, 10) + 1:]
    r = check(cut, keys)
    assert not r.ok and r.bad_seq == 10 and "missing" in r.error, r.error
    # drop entry 10 and its checkpoint: only the requirement of a final checkpoint (an export
    # after shutdown) or a peer's witnessed checkpoint can tell
    cut = lines[: idx_of(lines, 10)]
    assert check(cut, keys).ok
    r = check(cut, keys, require_checkpoint=True)
    assert not r.ok and r.bad_seq == 9 and "not covered" in r.error, r.error


@pytest.mark.parametrize("seq", [1, 4, 9])
def test_reordered_entries_are_named(exported, keys, seq):
    lines = list(exported)
    i, j = idx_of(lines, seq), idx_of(lines, seq + 1)
    lines[i], lines[j] = lines[j], lines[i]
    r = check(lines, keys)
    assert not r.ok and r.bad_seq == seq and "out of order" in r.error, r.error


def test_duplicated_entry_is_named(exported, keys):
    lines = list(exported)
    lines.insert(idx_of(lines, 6) + 1, lines[idx_of(lines, 3)])
    r = check(lines, keys)
    assert not r.ok and r.bad_seq == 3 and "out of order" in r.error, r.error


def test_non_canonical_line_is_named(exported, keys):
    lines = list(exported)
    i = idx_of(lines, 7)
    lines[i] = lines[i].replace(b'{"entry":{', b'{"entry": {')
    r = check(lines, keys)
    assert not r.ok and r.bad_seq == 7 and "canonical" in r.error


def _cp_line(lines, seq):
    return next(i for i, ln in enumerate(lines)
                if ln.startswith(b'{"checkpoint"') and json.loads(ln)["checkpoint"]["seq"] == seq)


@pytest.mark.parametrize("how", ["signature", "head", "seq", "time", "other_key", "node"])
def test_forged_checkpoint_is_named(exported, keys, nodes, how):
    lines = list(exported)
    i = _cp_line(lines, 8)
    obj = json.loads(lines[i])
    if how == "signature":
        s = bytearray(bytes.fromhex(obj["signature"]))
        s[5] ^= 1
        obj["signature"] = s.hex()
    elif how == "head":
        obj["checkpoint"]["head"] = json.loads(lines[idx_of(lines, 7)])["hash"]
    elif how == "seq":
        obj["checkpoint"]["seq"] = 6
    elif how == "time":
        obj["checkpoint"]["time"] = "2030-01-01T00:00:00.000Z"
    elif how == "node":
        obj["checkpoint"]["node"] = "node-2"
    else:  # a well-formed checkpoint signed by another node's key
        cp = A.Checkpoint.from_json(obj)
        obj["signature"] = nodes["node-2"].sign(cp.digest()).hex()
    lines[i] = canonical_json(obj)
    r = check(lines, keys)
    expected = 6 if how == "seq" else 8
    assert not r.ok and r.bad_seq == expected and r.line == i + 1, r.error
    assert f"entry {expected}" in r.error


def test_rewritten_history_caught_by_checkpoint(tmp_path, exported, keys, nodes):
    """A node that rewrites an entry and re-chains everything after it still contradicts the
    head it signed earlier."""
    lines = list(exported)
    ents = [json.loads(lines[i])["entry"] for i in entry_lines(lines)]
    ents[2]["decision"] = "allowed"
    prev, out = A.GENESIS, []
    for e in ents:
        e["prev"] = prev
        raw = canonical_json(e)
        prev = hashlib.sha256(raw).hexdigest()
        out.append(canonical_json({"entry": e, "hash": prev}))
    cps = [ln for ln in lines if ln.startswith(b'{"checkpoint"')]
    r = check(out + cps, keys)
    assert not r.ok and r.bad_seq == 4 and "signed head" in r.error, r.error


def test_unknown_node_key(exported, keys):
    r = check(exported, {"node-2": keys["node-2"]})
    assert not r.ok and "not a configured node" in r.error


# --------------------------------------------------------------------------- co-signing


def test_peer_cosignatures_and_witnessing(tmp_path, nodes, keys):
    logs = {n: make_log(tmp_path / f"{n}.db", nodes, node=n) for n in nodes}
    fill(logs["node-1"], 4)
    cp = logs["node-1"].latest_checkpoint()
    assert cp is not None and cp.seq == 4
    for peer in ("node-2", "node-3"):
        sig = logs[peer].witness(json.dumps(cp.to_json()), keys)
        logs["node-1"].add_cosignature(cp.seq, peer, sig, keys)
    with pytest.raises(A.AuditError):
        logs["node-1"].add_cosignature(cp.seq, "node-2", b"\x01" * 64, keys)
    lines = list(logs["node-1"].export_lines())
    r = check(lines, keys, min_cosignatures=2)
    assert r.ok and r.cosignatures == 2, r.summary()
    # forged co-signature
    i = _cp_line(lines, 4)
    obj = json.loads(lines[i])
    obj["cosignatures"]["node-3"] = nodes["node-1"].sign(cp.digest()).hex()
    bad = lines[:i] + [canonical_json(obj)] + lines[i + 1:]
    r = check(bad, keys)
    assert not r.ok and r.bad_seq == 4 and "co-signature" in r.error
    # too few
    fill(logs["node-1"], 4)
    r = check(list(logs["node-1"].export_lines()), keys, min_cosignatures=1)
    assert not r.ok and r.bad_seq == 8


def test_witness_refuses_forks_rollbacks_and_forgeries(tmp_path, nodes, keys):
    a = make_log(tmp_path / "a.db", nodes, node="node-1", every=2)
    b = make_log(tmp_path / "b.db", nodes, node="node-2")
    fill(a, 4)
    cp2, cp4 = a.checkpoints()
    b.witness(cp4, keys)
    with pytest.raises(A.AuditError, match="older"):
        b.witness(cp2, keys)
    fork = A.Checkpoint("node-1", 4, "cd" * 32, cp4.time, b"")
    fork = A.Checkpoint(fork.node, 4, fork.head, fork.time, nodes["node-1"].sign(fork.digest()))
    with pytest.raises(A.AuditError, match="rewritten"):
        b.witness(fork, keys)
    forged = A.Checkpoint("node-1", 6, "cd" * 32, cp4.time, b"\x02" * 64)
    with pytest.raises(A.AuditError, match="not signed"):
        b.witness(forged, keys)
    assert [c.seq for c in b.witnessed("node-1")] == [4]


def test_witnessed_checkpoints_catch_a_cut_export(tmp_path, nodes, keys):
    a = make_log(tmp_path / "a.db", nodes, node="node-1", every=4)
    b = make_log(tmp_path / "b.db", nodes, node="node-2")
    fill(a, 8)
    for cp in a.checkpoints():
        b.witness(cp, keys)
    lines = list(a.export_lines())
    cut = lines[: idx_of(lines, 5)]  # entries 5.. and their checkpoint removed
    assert check(cut, keys).ok
    r = check(cut, keys, anchors=b.witnessed("node-1"))
    assert not r.ok and r.bad_seq == 5 and "missing" in r.error


# --------------------------------------------------------------------------- fail closed


def test_unwritable_store_raises_audit_unavailable(tmp_path, nodes):
    log = make_log(tmp_path / "a.db", nodes)
    fill(log, 2)
    log._own.conn.execute("PRAGMA query_only = ON")
    with pytest.raises(AuditUnavailable) as e:
        log.append("initiator", "sign_request", subject="req_x")
    assert e.value.code == "audit_unavailable" and error_status(e.value) == 503  # api/errors.py
    log._own.conn.execute("PRAGMA query_only = OFF")
    assert log.append("initiator", "sign_request", subject="req_x").seq == 3


def test_full_disk_raises_audit_unavailable_and_records_nothing(tmp_path, nodes, keys):
    log = make_log(tmp_path / "a.db", nodes, every=1000)
    fill(log, 2)
    db = log._own.conn
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(AuditUnavailable):
        for i in range(500):
            log.append("initiator", "sign_request", subject=f"req_{i}", reason="x" * 250)
    seq = log.head()[0]
    db.execute("PRAGMA max_page_count = 1073741823")
    assert log.append("initiator", "sign_request").seq == seq + 1
    assert check(list(log.export_lines()), keys).ok


def test_lost_database_raises_audit_unavailable(tmp_path, nodes):
    log = make_log(tmp_path / "a.db", nodes)
    log._own.conn.close()
    with pytest.raises(AuditUnavailable):
        log.append("initiator", "sign_request")
    with pytest.raises(AuditUnavailable):
        log.head()
    with pytest.raises(AuditUnavailable):
        AuditLog(tmp_path, "node-1")  # a directory is no database
    with pytest.raises(AuditUnavailable):
        AuditLog(tmp_path / "missing" / "a.db", "node-1")


# --------------------------------------------------------------------------- fields


@pytest.mark.parametrize("kw", [
    {"reason": "share " + "ab" * 32},
    {"reason": "x = " + "1234567890" * 8},
    {"reason": "-----BEGIN PRIVATE KEY----- MIIB"},
    {"reason": "blob " + "q3Zk9XbT1mA0vP7wLr2sYcE8nHdJ4uGiKoB6xFhM5tWz+/="},
    {"subject": "req_" + "f" * 64},
    {"actor": "has space"},
    {"action": "Sign Request"},
    {"digest": "xyz"},
    {"digest": b"\x00" * 31},
    {"decision": "a very long decision code that is not a code"},
    {"key": 5},
])
def test_fields_are_checked_and_secrets_refused(tmp_path, nodes, kw):
    log = make_log(tmp_path / "a.db", nodes)
    args = {"actor": "initiator", "action": "sign_request", **kw}
    with pytest.raises(AuditFieldError):
        log.append(args.pop("actor"), args.pop("action"), **args)
    assert log.head()[0] == 0


def test_only_the_listed_fields(tmp_path, nodes):
    log = make_log(tmp_path / "a.db", nodes)
    with pytest.raises(TypeError):
        log.append("initiator", "sign_request", share=b"secret")  # type: ignore[call-arg]
    e = log.record("node-2", "join_sign", key_id="key_1", subject="job_ab12",
                   decision="accepted", reason="peer asked\nto join")
    assert e.fields["reason"] == "peer asked to join"
    assert e.fields["key"] == "key_1"
    # ordinary public values pass the guard
    log.append("alice@example.com", "sign_failed", key="key_0123456789abcdef01234567",
               subject="req_0123456789abcdef0123456789abcdef", digest=b"\x11" * 32,
               decision="failed", reason="quorum_unreachable: node-2, node-3 (503) /v1/peer/jobs")


# --------------------------------------------------------------------------- the command


def test_verify_command(tmp_path, exported, keys):
    f = tmp_path / "audit.jsonl"
    f.write_bytes(b"\n".join(exported) + b"\n")
    cluster = tmp_path / "cluster.toml"
    cluster.write_text('[cluster]\nid = "c"\n' + "".join(
        f'[[nodes]]\nid = "{n}"\nindex = {i}\nidentity_key = "{k.hex()}"\n'
        for i, (n, k) in enumerate(keys.items())))
    # (without the peers' checkpoints, which tests/node/test_audit_anchor.py covers)
    def verify(path, **kw):
        out = io.StringIO()
        code = AV.verify_command(path, cluster=cluster, require_checkpoint=False, out=out,
                                 err=io.StringIO(), **kw)
        return code, out.getvalue()

    code, out = verify(f)
    assert code == 0 and out.startswith("OK: node node-1, 10 entries"), out
    lines = list(exported)
    del lines[idx_of(lines, 4)]
    f.write_bytes(b"\n".join(lines) + b"\n")
    code, out = verify(f)
    assert code == 7 and "FAIL: entry 4 missing" in out, out
    assert verify(tmp_path / "nope.jsonl")[0] == 2
    # argparse front end (what `appliance audit verify` delegates to)
    args = ["verify", str(f), "--node-key", f"node-1={keys['node-1'].hex()}",
            "--no-require-checkpoint"]
    assert AV.main(args) == 7


def test_export_to_file_and_since(tmp_path, nodes, keys):
    log = make_log(tmp_path / "a.db", nodes)
    fill(log, 9)
    assert log.export(tmp_path / "x.jsonl") == 9 + 2
    assert A.verify_file(tmp_path / "x.jsonl", keys).ok
    part = list(log.export_lines(since=5))
    assert not check(part, keys).ok
    r = check(part, keys, allow_partial=True)
    assert r.ok and r.first_seq == 6 and "on trust" in r.summary()


# --------------------------------------------------------------------------- request_id (optional field)


def _rechain(ents: list[dict]) -> list[bytes]:
    prev, out = A.GENESIS, []
    for e in ents:
        e["prev"] = prev
        raw = canonical_json(e)
        prev = hashlib.sha256(raw).hexdigest()
        out.append(canonical_json({"entry": e, "hash": prev}))
    return out


def test_request_id_is_an_optional_field_and_old_entries_keep_their_format(tmp_path, nodes, keys):
    log = make_log(tmp_path / "a.db", nodes)
    log.append("initiator", "sign_request", key="key_1", subject="req_1", decision="pending")
    log.append("initiator", "sign_request", key="key_1", subject="req_2", decision="pending",
               request_id="trace-9.A_b")
    log.record("approver", "approval", key_id="key_1", subject="req_2", decision="allowed",
               request_id="trace-10")
    lines = list(log.export_lines())
    log.close()
    ents = [json.loads(lines[i])["entry"] for i in entry_lines(lines)]
    assert set(ents[0]) == set(A.ENTRY_FIELDS)  # no request_id key at all: the old format
    assert set(ents[1]) == set(A.ENTRY_FIELDS) | {"request_id"}
    assert (ents[1]["request_id"], ents[2]["request_id"]) == ("trace-9.A_b", "trace-10")
    r = check(lines, keys)
    assert r.ok and r.entries == 3, r.summary()


@pytest.mark.parametrize("bad", ["", "x" * 65, "a b", "id/1", 7])
def test_a_malformed_request_id_is_refused_and_nothing_is_written(tmp_path, nodes, bad):
    log = make_log(tmp_path / "a.db", nodes)
    with pytest.raises(AuditFieldError) as e:
        log.append("initiator", "sign_request", subject="req_1", decision="pending", request_id=bad)
    assert str(e.value) == "audit request_id must match [A-Za-z0-9._-]{1,64}"
    assert log.head() == (0, A.GENESIS)
    log.close()


@pytest.mark.parametrize("edit, error", [
    ({"request_id": None}, "entry 2 altered: a field is malformed"),
    ({"request_id": "a b"}, "entry 2 altered: a field is malformed"),
    ({"trace": "x"}, "entry 2 altered: not an audit entry"),
])
def test_verify_refuses_a_bad_request_id_or_an_unknown_field(tmp_path, nodes, keys, edit, error):
    log = make_log(tmp_path / "a.db", nodes, every=100)
    log.append("initiator", "sign_request", subject="req_1", decision="pending", request_id="ok-1")
    log.append("initiator", "sign_request", subject="req_2", decision="pending")
    lines = list(log.export_lines())
    log.close()
    ents = [json.loads(lines[i])["entry"] for i in entry_lines(lines)]
    ents[1].update(edit)
    r = check(_rechain(ents), keys)
    assert not r.ok and r.bad_seq == 2 and r.error == error, r.error
    if "trace" in edit:
        return
    ents[1].pop("request_id")  # the same entry without the field is valid
    assert check(_rechain(ents), keys).ok


def test_the_entries_about_one_subject_come_by_index_exact_and_capped(tmp_path, nodes):
    """A console request page's audit entries (issue 17 review, finding 5): an exact match on
    ``subject`` through an index (no export, no scan), the last MAX_ABOUT at most."""
    log = make_log(tmp_path / "a.db", nodes, every=1000)
    rid, other = "req_" + "1" * 32, "req_" + "1" * 31 + "2"
    log.append("initiator", "sign_request", subject=rid, decision="pending")
    log.append("approver", "approval", subject=other, decision="accepted", reason=f"about {rid}")
    log.append("approver", "approval", subject=rid, decision="accepted")
    got = log.about(rid)
    assert [(e["seq"], e["action"], e["subject"]) for e in got] == [(1, "sign_request", rid), (3, "approval", rid)]
    assert log.about(rid[:-1]) == []  # exact: no prefix or substring match
    plan = log._read("EXPLAIN QUERY PLAN SELECT seq FROM audit_entries WHERE "
                     f"{A.log.SUBJECT_SQL} = ? ORDER BY seq DESC LIMIT 1", (rid,))
    assert any("audit_entries_subject" in str(row) for row in plan), plan
    for _ in range(A.log.MAX_ABOUT + 5):
        log.append("approver", "approval", subject=other, decision="accepted")
    assert [e["seq"] for e in log.about(other, limit=10_000)] == list(range(9, 9 + A.log.MAX_ABOUT))
