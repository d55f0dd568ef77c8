"""A participant's checks in process (issue 13): Participant.accept -> JobAuthorizer ->
RequestUse.check_job, with real identity keys (coincurve) and a real NodeStore on tmp_path.
A refused job leaves nothing behind but its used job id and the audited refusal."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import types

import pytest

from appliance.errors import PolicyDenied, ServiceError
from appliance.job_authority import COORDINATOR_SIG, job_digest
from appliance.jobs.authorization import JobAuthorizer
from appliance.jobs.participant import Participant
from appliance.policy import Approval, Policy, SignedRequest
from appliance.recorder import Recorder
from appliance.request_use import USE_MARKS, RequestUse, RequestUseRefused, use_digest
from appliance.storage import NodeStore
from appliance.tss.group import G
from tests.node.fakes import FakePorts, Users, fake_runtime, with_identities
from tests.webauthn_soft import SoftPasskey

KEY = "key_" + "a" * 24
COORD = 1
KINDS = ("sign", "keygen", "import", "refresh", "reshare", "presign")
USER_KINDS = KINDS[:-1]


def _sealed() -> bytes:
    return bytes([1, 13]) + b"appliance/kek" + os.urandom(12 + 40)


class _Table:
    def __init__(self) -> None:
        self.jobs: dict = {}

    def seen(self, job_id):
        return job_id in self.jobs

    def get(self, job_id):
        return self.jobs.get(job_id)

    def add(self, job):
        self.jobs[job.job_id] = job


def _request_use(rt, ports: FakePorts) -> RequestUse:
    return RequestUse(rt, peers=ports.peers, **ports.slots("key_store", "replay", "hsm"))


@pytest.fixture
def node(tmp_path):
    users = Users()
    store = NodeStore(tmp_path / "node.db")
    store.put_pending_key(KEY, G.to_bytes(), 2, [0, 1, 2], 0, 2048, _sealed(), b"\x07" * 32)
    store.set_key_status(KEY, "active")
    rt, ports = fake_runtime(users.policy), FakePorts(store)
    signers = with_identities(rt)
    recorder = Recorder(rt, ports.slot("audit"), ports.slot("transactions"))
    mismatches: list = []
    authorizer = JobAuthorizer(rt, recorder, request_use=_request_use(rt, ports), rate_usage=lambda *a, **kw: 0,
                               on_policy_mismatch=lambda: mismatches.append(True),
                               **ports.slots("key_store", "replay"))
    table = _Table()
    part = Participant(rt, table, local=None, kinds={}, authorizer=authorizer, quarantine=None,
                       recorder=recorder, on_sign=lambda: pytest.fail("no job may start"),
                       **ports.slots("replay", "changes", "audit"))
    yield types.SimpleNamespace(users=users, rt=rt, store=store, signers=signers, part=part, table=table,
                                mismatches=mismatches, ports=ports, audit=ports.audit)
    store.close()


def _job(n, kind: str, **kw) -> dict:
    spec = {"job_id": "job_" + os.urandom(12).hex(), "kind": kind, "key_id": KEY, "parties": [0, 1],
            "coordinator": COORD, "policy_hash": n.users.policy.hash, "epoch": 0, **kw}
    if kind in USER_KINDS:
        spec.setdefault("approvals", [])
    spec[COORDINATOR_SIG] = n.signers[COORD].sign(job_digest(spec)).hex()
    return spec


def _accept(n, spec, from_index: int = COORD):
    return asyncio.run(n.part.accept(spec, from_index))


def _nothing_stored(n, spec) -> None:
    assert n.table.jobs == {}
    assert not [e for e in n.audit.entries if e["action"].startswith("join_")]
    assert n.store.job_id_used(spec["job_id"])  # a job id is never used twice, refused or not


@pytest.mark.parametrize("kind", USER_KINDS)
def test_a_job_without_its_signed_statement_is_refused(node, kind):
    spec = _job(node, kind)
    with pytest.raises(PolicyDenied) as ei:
        _accept(node, spec)
    assert ei.value.code == "bad_request"
    assert node.audit.entries[-1]["action"] == f"{kind}_job_refused"
    assert node.audit.entries[-1]["reason"] == "bad_request"
    assert node.audit.entries[-1]["actor"] == "node-2"
    _nothing_stored(node, spec)


@pytest.mark.parametrize("kind", KINDS)
def test_a_job_under_another_policy_is_refused_and_the_policy_caught_up(node, kind):
    spec = _job(node, kind, policy_hash="0" * 64)
    with pytest.raises(PolicyDenied) as ei:
        _accept(node, spec)
    assert ei.value.code == "policy_mismatch"
    assert node.mismatches == [True]
    _nothing_stored(node, spec)


@pytest.mark.parametrize("kind", KINDS)
def test_a_replayed_job_id_is_refused(node, kind):
    spec = _job(node, kind, policy_hash="0" * 64)
    with pytest.raises(PolicyDenied):
        _accept(node, spec)
    n_audit = len(node.audit.entries)
    with pytest.raises(ServiceError) as ei:
        _accept(node, spec)
    assert ei.value.code == "job_exists"
    assert node.mismatches == [True]  # not checked a second time
    assert len(node.audit.entries) == n_audit
    _nothing_stored(node, spec)


def test_a_job_not_signed_by_its_coordinator_is_refused_before_its_id_is_used(node):
    spec = _job(node, "presign")
    spec[COORDINATOR_SIG] = node.signers[2].sign(job_digest(spec)).hex()  # another node's key
    with pytest.raises(PolicyDenied) as ei:
        _accept(node, spec)
    assert ei.value.code == "bad_coordinator_signature"
    assert not node.store.job_id_used(spec["job_id"]) and node.table.jobs == {}
    with pytest.raises(ServiceError) as ei:
        _accept(node, _job(node, "presign"), from_index=2)
    assert ei.value.code == "forbidden"


# -- RequestUse.check_job -----------------------------------------------------------------


def _sign_spec(n, parties=(0, 1), marks_by=(0, 1), **kw) -> dict:
    sr = n.users.request(n.rt.clock.now(), key_id=KEY, digest=b"\x33" * 32, derivation_path="m")
    approval = n.users.decision("approver", sr, n.rt.clock.now())["approval"]
    rid = sr.request_id
    digest = use_digest(rid, KEY, list(parties))
    marks = {n.rt.peers[i].id: n.signers[i].sign(digest).hex() for i in marks_by}
    spec = {"job_id": "job_" + os.urandom(12).hex(), "kind": "sign", "key_id": KEY, "parties": list(parties),
            "coordinator": COORD, "policy_hash": n.users.policy.hash, "request_id": rid, "request": sr.to_json(),
            "approvals": [approval], "digest": (b"\x33" * 32).hex(), "derivation_path": "m", USE_MARKS: marks}
    spec.update(kw)
    return spec


def _check(n, spec):
    _request_use(n.rt, n.ports).check_job(spec, n.store.get_key(KEY))


def test_use_marks_from_a_quorum_of_holders_reserve_the_request_here(node):
    spec = _sign_spec(node)  # n - t + 1 = 2 of 3 holders
    _check(node, spec)
    assert node.store.request_used(spec["request_id"]) is False  # reserved, not yet used
    _check(node, spec)  # the same set again: still fine


def test_use_marks_below_the_quorum_are_refused(node):
    spec = _sign_spec(node, marks_by=(0,))
    with pytest.raises(RequestUseRefused) as ei:
        _check(node, spec)
    assert ei.value.code == "use_not_confirmed"
    assert "1 valid" in ei.value.message


def test_only_valid_confirmations_from_holders_count(node):
    spec = _sign_spec(node)
    marks = spec[USE_MARKS]
    bad = dict(marks)
    bad["node-2"] = node.signers[0].sign(use_digest(spec["request_id"], KEY, [0, 1])).hex()  # node-1's key
    cases = [
        bad,
        {**marks, "node-2": node.signers[1].sign(use_digest(spec["request_id"], KEY, [0, 2])).hex()},  # other set
        {**marks, "node-2": node.signers[1].sign(use_digest("req_other", KEY, [0, 1])).hex()},  # other request
        {"node-1": marks["node-1"], "node-9": marks["node-2"]},  # not a node
        {"node-1": marks["node-1"], "node-2": "zz" * 64},  # not hex
        {"node-1": marks["node-1"], "node-2": marks["node-2"][:-2]},  # short
        {"node-1": marks["node-1"], "node-1 ": marks["node-1"]},  # the same holder twice is one
        ["node-1", "node-2"],  # not a mapping
    ]
    for got in cases:
        with pytest.raises(RequestUseRefused) as ei:
            _check(node, {**spec, USE_MARKS: got})
        assert ei.value.code == "use_not_confirmed", got
    _check(node, spec)  # nothing was reserved by the refusals: the valid marks still pass


def test_confirmations_from_holders_outside_the_signer_set_count(node):
    _check(node, _sign_spec(node, parties=(0, 1), marks_by=(1, 2)))


def test_a_second_signer_set_for_the_request_is_refused(node):
    first = _sign_spec(node)
    _check(node, first)
    rid = first["request_id"]
    digest = use_digest(rid, KEY, [0, 2])
    marks = {node.rt.peers[i].id: node.signers[i].sign(digest).hex() for i in (0, 1, 2)}
    with pytest.raises(RequestUseRefused) as ei:
        _check(node, {**first, "parties": [0, 2], USE_MARKS: marks})
    assert ei.value.code == "request_already_signed"


def test_a_sign_job_with_its_request_and_approval_but_no_use_marks_is_refused_by_the_participant(node):
    spec = _sign_spec(node, marks_by=())
    spec[COORDINATOR_SIG] = node.signers[COORD].sign(job_digest(spec)).hex()
    with pytest.raises(RequestUseRefused) as ei:
        _accept(node, spec)
    assert ei.value.code == "use_not_confirmed"
    assert node.audit.entries[-1]["action"] == "sign_job_refused"
    assert node.audit.entries[-1]["reason"] == "use_not_confirmed"
    assert not node.store.request_used(spec["request_id"])
    _nothing_stored(node, spec)


# -- passkey approvals in a sign job (issue 17) ---------------------------------------------


def test_a_signer_checks_each_passkey_approval_and_takes_counters_in_either_order(node):
    """A signer verifies a passkey approval in the job itself and records its counter. Two
    requests approved with one passkey (counters 5 then 6) may reach it in the other order (the
    first waited for a second approver): both are taken; another assertion with counter 5 (a
    cloned authenticator) is refused, audited naming the passkey; so is a forged signature."""
    key = SoftPasskey(-7, "localhost", "https://node-1.example:8443", label="laptop")
    c = node.users.policy.canonical()
    for u in c["users"]:
        if u["id"] == "approver":
            u["passkeys"] = [key.policy_entry()]
    c["webauthn"] = {"rp_id": "localhost", "origins": ["https://node-1.example:8443"]}
    node.users.policy = node.rt.policy = Policy.from_mapping(c)

    def passkey_job(counter: int, **bend) -> dict:
        spec = _sign_spec(node)
        sr = SignedRequest.from_json(spec["request"])
        now = int(node.rt.clock.now())
        a = Approval(sr.request.binding(), "approver", "approve", now, now + 600)
        a = dataclasses.replace(a, webauthn=key.assert_(a.challenge(), counter=counter, **bend))
        spec["approvals"] = [a.to_json()]
        return spec

    authorize = node.part.authorizer.authorize
    name = f"approver by passkey laptop ({key.id[:8]})"
    assert authorize(passkey_job(6), COORD).passkeys == name  # what the join entry names
    assert authorize(passkey_job(5), COORD).passkeys == name
    for spec, code, message in (
            (passkey_job(5), "webauthn_counter_replay",
             f"approver's passkey laptop ({key.id[:8]}): sign counter 5 was another assertion's that "
             "this node already accepted"),
            (passkey_job(7, signer=SoftPasskey(-7, "localhost", "https://node-1.example:8443")),
             "webauthn_bad_signature", f"the assertion is not signed by approver's passkey laptop ({key.id[:8]})")):
        with pytest.raises(PolicyDenied) as ei:
            authorize(spec, COORD)
        assert (ei.value.code, ei.value.message) == (code, message)
        e = node.audit.entries[-1]
        assert (e["action"], e["actor"], e["reason"]) == ("sign_job_refused", "node-2", f"{code} ({name})")
        assert not node.store.request_used(spec["request_id"])
