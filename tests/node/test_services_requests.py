"""SignRequests.decide in process (issue 13): approvals accumulate until the rule is met,
duplicates, rejections, cancels, expiry and a policy change, against the fakes."""

from __future__ import annotations

import asyncio
import types

import pytest

from appliance.errors import PolicyDenied, ServiceError
from appliance.recorder import Recorder
from appliance.signing import states
from appliance.signing.requests import SignRequests
from appliance.tss.group import G
from tests.node.fakes import FakeClock, FakePorts, Users, fake_runtime

KEY = "key_" + "a" * 24
USER = types.SimpleNamespace


def _setup(approvers: int = 2):
    users = Users(approvers)
    clock = FakeClock()
    rt, ports = fake_runtime(users.policy, clock=clock), FakePorts()
    row = {"key_id": KEY, "public_key": G.to_bytes(), "chain_code": None, "threshold": 2,
           "participants": [0, 1, 2], "epoch": 0}
    ran: list = []

    async def healthy(indices, **kw):
        return sorted(indices), []

    async def decode_request(row, request, payload, network):
        return "decoded"

    svc = SignRequests(
        rt, Recorder(rt, ports.slot("audit"), ports.slot("transactions")), shares=types.SimpleNamespace(active_key=lambda key_id: row),
        reader=types.SimpleNamespace(decode_request=decode_request, rate_usage=lambda *a, **kw: 0),
        health=types.SimpleNamespace(split_healthy=healthy),
        quarantine=types.SimpleNamespace(not_quarantined=lambda idx: list(idx)),
        request_use=None, pool=None, coordinate=None, claims=None, peers=ports.peers,
        **ports.slots("requests", "statements", "key_store", "presigs"))
    svc._run = lambda rid, row, dec, signers, *a: ran.append((rid, dec, signers))
    svc.view = lambda req: req
    rt.spawn = lambda call: call  # _run is a plain function here: nothing to schedule
    sr = users.request(clock.now(), key_id=KEY, digest=b"\x11" * 32, derivation_path="m")
    rid = sr.request_id
    ports.requests.requests[rid] = {"request_id": rid, "key_id": KEY, "status": states.PENDING, "signers": None,
                              "error": None}
    ports.requests.statements[rid] = {"request": sr.to_json(), "final": None, "payload": None, "network": None}
    return users, rt, svc, sr, ran, ports


def _decide(svc, uid, kind, body, rid):
    return asyncio.run(svc.decide(USER(id=uid), rid, kind, body))


def test_approvals_accumulate_and_the_request_signs_only_when_the_rule_is_met():
    users, rt, svc, sr, ran, ports = _setup(approvers=2)
    rid = sr.request_id
    out = _decide(svc, "approver", "approval", users.decision("approver", sr, rt.clock.now()), rid)
    assert out["status"] == states.PENDING and ran == []
    assert list(ports.requests.decided[rid]) == ["approver"]
    out = _decide(svc, "approver2", "approval", users.decision("approver2", sr, rt.clock.now()), rid)
    assert out["status"] == states.SIGNING
    assert out["signers"] == ["node-1", "node-2"]
    assert ran == [(rid, "decoded", [0, 1])]
    # signing, not finished: no completed outcome counted (appliance_sign_requests_completed_total)
    assert not [c for c in rt.metrics.counted if c[0] == "sign_request_completed"]
    # a later decision finds the request no longer pending
    with pytest.raises(ServiceError) as ei:
        _decide(svc, "initiator", "cancel", users.decision("initiator", sr, rt.clock.now(), "cancel"), rid)
    assert ei.value.code == "not_pending"
    assert ports.requests.requests[rid]["status"] == states.SIGNING


def test_a_duplicate_approver_is_refused_and_nothing_more_is_recorded():
    users, rt, svc, sr, ran, ports = _setup(approvers=2)
    rid = sr.request_id
    _decide(svc, "approver", "approval", users.decision("approver", sr, rt.clock.now()), rid)
    rt.clock.t += 5
    with pytest.raises(PolicyDenied) as ei:
        _decide(svc, "approver", "approval", users.decision("approver", sr, rt.clock.now()), rid)
    assert ei.value.code == "duplicate_approver"
    assert ports.requests.requests[rid]["status"] == states.PENDING
    assert list(ports.requests.decided[rid]) == ["approver"] and ran == []
    assert ports.audit.entries[-1]["reason"] == "duplicate_approver"


def test_a_rejection_closes_the_request():
    users, rt, svc, sr, ran, ports = _setup(approvers=2)
    rid = sr.request_id
    _decide(svc, "approver", "approval", users.decision("approver", sr, rt.clock.now()), rid)
    out = _decide(svc, "approver2", "rejection", users.decision("approver2", sr, rt.clock.now(), "reject"), rid)
    assert out["status"] == states.REJECTED
    assert out["error"]["code"] == "rejected"
    assert ran == [] and ports.requests.statements[rid]["final"] is None
    assert ports.audit.entries[-1]["action"] == "request_closed"
    assert ports.audit.entries[-1]["decision"] == "rejected"


def test_the_initiators_cancel_closes_the_request_for_good():
    users, rt, svc, sr, ran, ports = _setup(approvers=2)
    rid = sr.request_id
    out = _decide(svc, "initiator", "cancel", users.decision("initiator", sr, rt.clock.now(), "cancel"), rid)
    assert out["status"] == states.REJECTED
    assert out["error"]["code"] == "cancelled"
    assert ports.requests.statements[rid]["final"] == "cancelled"
    with pytest.raises(ServiceError) as ei:
        _decide(svc, "approver", "approval", users.decision("approver", sr, rt.clock.now()), rid)
    assert ei.value.code == "not_pending"
    assert list(ports.requests.decided[rid]) == ["initiator"] and ran == []


def test_an_approval_after_the_window_is_refused_as_expired():
    users, rt, svc, sr, ran, ports = _setup(approvers=1)
    rid = sr.request_id
    rt.clock.t += 601  # the request's ttl_s is 600
    with pytest.raises(PolicyDenied) as ei:
        _decide(svc, "approver", "approval", users.decision("approver", sr, rt.clock.now()), rid)
    assert ei.value.code == "expired"
    assert ports.requests.requests[rid]["status"] == states.EXPIRED
    assert ports.requests.requests[rid]["error"]["code"] == "expired"
    assert rid not in ports.requests.decided and ran == []
    assert [e["action"] for e in ports.audit.entries][:1] == ["request_expired"]


def test_a_policy_change_expires_pending_requests_and_only_those():
    users, rt, svc, sr, ran, ports = _setup(approvers=1)
    rid = sr.request_id
    other = users.request(rt.clock.now(), key_id=KEY, digest=b"\x22" * 32, derivation_path="m").request_id
    ports.requests.requests[other] = {"request_id": other, "key_id": KEY, "status": states.SIGNING,
                                "signers": ["node-1", "node-2"], "error": None}
    err = PolicyDenied("policy_changed", "the policy changed").to_error()
    assert svc.expire_all_pending(err) == 1
    assert ports.requests.requests[rid]["status"] == states.EXPIRED
    assert ports.requests.requests[rid]["error"]["code"] == "policy_changed"
    assert ports.requests.requests[other]["status"] == states.SIGNING
    with pytest.raises(PolicyDenied) as ei:
        _decide(svc, "approver", "approval", users.decision("approver", sr, rt.clock.now()), rid)
    assert ei.value.code == "expired"


def test_the_signers_are_a_set_with_presignatures_ready_never_a_spent_one():
    users, rt, svc, sr, ran, ports = _setup(approvers=1)
    row = svc.shares.active_key(KEY)
    ports.presigs.sets = {(0, 2): 3, (0, 1): 0, (1, 2): 9}  # (0, 1) spent; (1, 2) without this node
    assert svc._choose_signers(row, [0, 1, 2], 2) == [0, 2]
    ports.presigs.sets = {(0, 2): 1, (0, 1): 2}
    assert svc._choose_signers(row, [0, 1, 2], 2) == [0, 1]  # the fuller set
    assert svc._choose_signers(row, [0, 1], 2) == [0, 1]
    ports.presigs.sets = {(0, 2): 2}
    assert svc._choose_signers(row, [0, 1], 2) == [0, 1]  # node 3 unreachable: no presignature used
    ports.presigs.sets = {(0, 1): 0, (0, 2): 0}
    assert svc._choose_signers(row, [0, 1, 2], 2) == [0, 1]  # none ready: this node and the first other
    assert svc._choose_signers(row, [1, 2], 2) == [1, 2]  # this node unreachable to itself


def test_an_approval_that_meets_the_rule_when_too_few_nodes_are_reachable_is_not_recorded():
    users, rt, svc, sr, ran, ports = _setup(approvers=1)
    rid = sr.request_id

    async def one_healthy(indices, **kw):
        return [0], [i for i in indices if i != 0]

    svc.health = types.SimpleNamespace(split_healthy=one_healthy)
    with pytest.raises(ServiceError) as ei:
        _decide(svc, "approver", "approval", users.decision("approver", sr, rt.clock.now()), rid)
    assert ei.value.code == "quorum_unreachable"
    assert ports.requests.requests[rid]["status"] == states.PENDING
    assert rid not in ports.requests.decided and ran == []
