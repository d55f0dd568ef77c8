"""The audit log in the node's database (issue 13, storage): a state change and its audit entry
commit in one transaction (Recorder.together), on a real NodeStore and a real AuditLog sharing
its one connection; a node of the old layout moves its audit.db in at start, verbatim; two
different logs refuse to start; ``[audit] db`` naming another file is a configuration error."""

from __future__ import annotations

import asyncio
import shutil
import types

import pytest

from appliance import cli
from appliance.audit import AuditLog, AuditLogConflict, adopt_legacy_log, verify_export
from appliance.config import ConfigError, _check_audit_db, load_node_config
from appliance.errors import PolicyDenied, ServiceError
from appliance.init_hsm import SoftHSMSetup
from appliance.policy import SIGN, Approval
from appliance.recorder import Recorder
from appliance.signing import states
from appliance.signing.requests import SignRequests
from appliance.storage import ConflictError, NodeStore
from appliance.tss.group import G
from tests.bare_node import bare_node
from tests.node.fakes import FakeClock, FakePorts, Users, fake_runtime
from tests.node.test_audit import fill, keys, make_log, nodes  # noqa: F401  (fixtures)
from tests.node.test_services_pools import _sealed

KEY = "key_" + "a" * 24
USER = types.SimpleNamespace


def refuse_entries(store: NodeStore, action: str) -> None:
    """The audit table refuses entries of ``action`` (as a full or read-only disk would), on
    the database object the test passed in: a TEMP trigger of this connection only."""
    store.database.execute(
        "CREATE TEMP TRIGGER refuse_entries BEFORE INSERT ON main.audit_entries "
        f"WHEN CAST(NEW.entry AS TEXT) LIKE '%\"action\":\"{action}\"%' "
        "BEGIN SELECT RAISE(ABORT, 'disk full (test)'); END")


def allow_entries(store: NodeStore) -> None:
    store.database.execute("DROP TRIGGER temp.refuse_entries")


@pytest.fixture
def node(tmp_path, nodes):  # noqa: F811
    users = Users(approvers=2)
    clock = FakeClock()
    store = NodeStore(tmp_path / "node.db")
    store.put_pending_key(KEY, G.to_bytes(), 2, [0, 1, 2], 0, 2048, _sealed(), b"\x07" * 32)
    store.set_key_status(KEY, "active")
    rt, ports = fake_runtime(users.policy, clock=clock), FakePorts(store)
    audit = AuditLog(store.database, "node-1", signer=nodes["node-1"].sign, checkpoint_every=100)
    ports.raw["audit"] = audit
    row = {"key_id": KEY, "public_key": G.to_bytes(), "chain_code": None, "threshold": 2,
           "participants": [0, 1, 2], "epoch": 0}
    recorder = Recorder(rt, ports.slot("audit"), ports.slot("transactions"))

    async def healthy(indices, **kw):
        return sorted(indices), []

    async def decode_request(row, request, payload, network):
        return "decoded"

    svc = SignRequests(
        rt, recorder, shares=types.SimpleNamespace(active_key=lambda key_id: row),
        reader=types.SimpleNamespace(decode_request=decode_request, rate_usage=lambda *a, **kw: 0),
        health=types.SimpleNamespace(split_healthy=healthy),
        quarantine=types.SimpleNamespace(not_quarantined=lambda idx: list(idx)),
        request_use=None, pool=None, coordinate=None, claims=None, peers=ports.peers,
        **ports.slots("requests", "statements", "key_store", "presigs"))
    svc.view = lambda req: req
    sr = users.request(clock.now(), key_id=KEY, digest=b"\x11" * 32, derivation_path="m")
    rid = sr.request_id
    store.put_sign_request(rid, KEY, b"\x11" * 32, "m", "initiator", None, request=sr.to_json(),
                           status=states.PENDING)
    store.put_statement(rid, rid, SIGN, KEY, sr.to_json())
    yield types.SimpleNamespace(users=users, rt=rt, store=store, svc=svc, sr=sr, rid=rid,
                                recorder=recorder, log=audit)
    store.close()


def _decide(n, uid: str, kind: str, decision: str = "approve") -> Exception | None:
    body = n.users.decision(uid, n.sr, n.rt.clock.now(), decision)
    try:
        asyncio.run(n.svc.decide(USER(id=uid), n.rid, kind, body))
    except (ServiceError, PolicyDenied) as exc:
        return exc
    return None


def _actions(log: AuditLog) -> list[str]:
    return [e["action"] for e in log.entries()]


def test_a_rejection_whose_entry_cannot_be_written_leaves_the_request_pending(node):
    """The regression: on the old code the rejection closed the request (status ``rejected``)
    and its ``request_closed`` entry was lost (best effort); now the decision, its entry and the
    close are one transaction: the audit write fails, nothing of it stays."""
    assert _decide(node, "approver", "approval") is None
    assert node.store.get_sign_request(node.rid)["status"] == states.PENDING
    before = _actions(node.log)
    refuse_entries(node.store, "request_closed")
    err = _decide(node, "approver2", "rejection", "reject")
    assert node.store.get_sign_request(node.rid)["status"] == states.PENDING
    assert isinstance(err, ServiceError) and err.code == "audit_unavailable"
    assert [Approval.from_json(d).approver for d in node.store.decisions(node.rid)] == ["approver"]
    assert _actions(node.log) == before and node.rt.audit_ok is False
    # the disk is back: the same rejection goes through, with its entries
    allow_entries(node.store)
    assert _decide(node, "approver2", "rejection", "reject") is None
    assert node.store.get_sign_request(node.rid)["status"] == states.REJECTED
    assert _actions(node.log)[len(before):] == ["rejection", "request_closed"]
    assert node.log.verify().ok


def test_together_rolls_the_state_change_back_when_the_entry_cannot_be_written(node):
    refuse_entries(node.store, "request_closed")
    with pytest.raises(ServiceError) as ei:
        with node.recorder.together():
            node.store.update_sign_request(node.rid, status=states.REJECTED)
            node.recorder.write("approver", "request_closed", key_id=KEY, subject=node.rid,
                                decision="rejected")
    assert ei.value.code == "audit_unavailable"
    assert node.store.get_sign_request(node.rid)["status"] == states.PENDING
    assert node.log.head()[0] == 0


def test_together_rolls_the_entry_back_when_the_state_change_fails(node):
    """No entry without its action either: the entry is written first, the store then
    refuses (the request is not where the change expects it)."""
    with pytest.raises(ConflictError):
        with node.recorder.together():
            node.recorder.write("approver", "request_closed", key_id=KEY, subject=node.rid,
                                decision="rejected")
            node.store.core.update_sign_request(node.rid, status=states.FAILED,
                                                expected_status=states.SIGNING)
    assert node.log.head()[0] == 0
    assert node.store.get_sign_request(node.rid)["status"] == states.PENDING


def test_a_refusals_entry_is_kept_and_refuse_is_refused_inside_together(node):
    assert _decide(node, "approver", "approval") is None
    err = _decide(node, "approver", "approval")
    assert isinstance(err, PolicyDenied) and err.code == "duplicate_approver"
    last = node.log.entries()[-1]
    assert (last["action"], last["decision"], last["reason"]) == ("approval", "denied", "duplicate_approver")
    assert _actions(node.log) == ["approval", "approval"]  # accepted once, refused once
    with pytest.raises(RuntimeError, match="inside together"):
        with node.recorder.together():
            node.recorder.refuse(PolicyDenied("x", "y"), actor="approver", action="approval")


# --------------------------------------------------------------------------- the old layout


def _old_layout(d, nodes) -> list[bytes]:  # noqa: F811
    """A data dir of the old layout: audit.db with a chain, checkpoints, a co-signature and a
    witnessed peer checkpoint. Returns its export."""
    pub = {n: v.public for n, v in nodes.items()}
    old = make_log(d / "audit.db", nodes, every=3)
    fill(old, 7)  # checkpoints at 3 and 6
    cp3 = old.checkpoints()[0]
    old.add_cosignature(3, "node-2", nodes["node-2"].sign(cp3.digest()), pub)
    peer = make_log(d / "peer.db", nodes, node="node-2", every=2)
    fill(peer, 2)
    old.witness(peer.checkpoints()[0], pub)
    peer.close()
    old.close()  # a final checkpoint at 7
    reopened = AuditLog(d / "audit.db", "node-1")
    lines = list(reopened.export_lines())
    reopened.close()
    return lines


def test_a_node_of_the_old_layout_moves_its_audit_db_in_at_start(tmp_path, nodes, keys):  # noqa: F811
    lines = _old_layout(tmp_path, nodes)
    n = bare_node(tmp_path)
    n.rt.clock = FakeClock(1_700_000_123.0)
    assert n.cosigning.open() is None
    log = n.audit
    assert list(log.export_lines()) == lines  # verbatim: every entry's bytes, checkpoints, co-signatures
    report = verify_export(log.export_lines(), keys, node_id="node-1")
    assert report.ok and report.entries == 7
    assert [c.seq for c in log.checkpoints()] == [3, 6, 7]
    assert set(log.checkpoints()[0].cosignatures) == {"node-2"}
    assert [c.seq for c in log.witnessed("node-2")] == [2]
    assert not (tmp_path / "audit.db").exists()
    assert (tmp_path / "audit.db.migrated-1700000123").is_file()
    # the log goes on in node.db, with the chain
    log.append("node-1", "node_start", decision="started")
    assert verify_export(log.export_lines(), keys, node_id="node-1", check_signatures=False).ok
    n.store.close()


def test_a_stop_between_the_move_and_the_rename_moves_nothing_twice(tmp_path, nodes):  # noqa: F811
    _old_layout(tmp_path, nodes)
    shutil.copy(tmp_path / "audit.db", tmp_path / "copy.db")
    store = NodeStore(tmp_path / "node.db")
    assert adopt_legacy_log(store.database, tmp_path / "audit.db", "node-1", now=100.0).entries == 7
    shutil.copy(tmp_path / "copy.db", tmp_path / "audit.db")  # as if the rename had not happened
    again = adopt_legacy_log(store.database, tmp_path / "audit.db", "node-1", now=100.0)
    assert again.entries == 0 and again.renamed_to.name == "audit.db.migrated-100.1"
    assert (tmp_path / "audit.db.migrated-100").is_file()  # never renamed over
    assert AuditLog(store.database, "node-1").head()[0] == 7
    store.close()


def test_two_different_logs_refuse_to_start_and_readyz_says_why(tmp_path, nodes):  # noqa: F811
    _old_layout(tmp_path, nodes)
    n = bare_node(tmp_path)
    AuditLog(n.store.database, "node-1").append("node-1", "node_start", decision="started")
    n.store.close()
    asyncio.run(n.start())
    assert n.rt.fault == ("audit_log_conflict: node.db and audit.db hold different audit entries "
                          "(first difference at entry 1); keep one log: move the other file aside")
    assert n.ready is False and n.audit is None
    assert (tmp_path / "audit.db").is_file()  # nothing renamed
    assert AuditLog(n.store.database, "node-1").head()[0] == 1  # nothing moved
    n.store.close()


def test_another_nodes_audit_db_is_refused(tmp_path, nodes):  # noqa: F811
    _old_layout(tmp_path, nodes)
    store = NodeStore(tmp_path / "node.db")
    with pytest.raises(AuditLogConflict) as ei:
        adopt_legacy_log(store.database, tmp_path / "audit.db", "node-2", now=1.0)
    assert ei.value.code == "audit_log_conflict"
    assert str(ei.value) == "audit.db is not the audit log of node-2"
    store.close()


def test_audit_db_naming_another_file_is_a_config_error(tmp_path):
    d = tmp_path / "n1"
    cli.init_node(d, "node-1", hsm=SoftHSMSetup(d / "hsm"), listen="127.0.0.1:1", url="https://127.0.0.1:1",
                  paillier_bits=2048)
    text = (d / "node.toml").read_text()
    _check_audit_db(d / "node.toml", {"db": "audit.db"})  # the old default: the file moved in at start
    _check_audit_db(d / "node.toml", {"db": str(d / "audit.db")})
    (d / "node.toml").write_text(text + '\n[audit]\ndb = "/var/log/audit.db"\n')
    with pytest.raises(ConfigError) as ei:
        load_node_config(d / "node.toml")
    assert str(ei.value) == (
        f"{d / 'node.toml'}: [audit] db = '/var/log/audit.db' is no longer supported: the audit log "
        "lives in the node's database ([node] db) so that a state change and its audit entry commit "
        "together; remove the setting (a log at audit.db beside node.toml is moved in at start)")
