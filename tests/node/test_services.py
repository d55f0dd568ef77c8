"""Services in process, against fakes of their ports (no HSM, no sockets, no SQLite)."""

from __future__ import annotations

import asyncio
import types

import pytest

from appliance.errors import PolicyDenied
from appliance.faults import FaultPlan
from appliance.jobs.authorization import JobAuthorizer
from appliance.recorder import Recorder
from appliance.request_claims import RequestClaims
from appliance.signing import states
from appliance.signing.reading import PayloadReader
from appliance.signing.requests import SignRequests
from appliance.tss.group import G
from tests.node.fakes import FakeClock, FakePorts, FakeStore, Users, fake_runtime

KEY = "key_" + "a" * 24
JOB = "job_" + "b" * 24


def _pending(store: FakeStore, users: Users, now: float) -> str:
    sr = users.request(now, key_id=KEY, digest=b"\x11" * 32, derivation_path="m")
    rid = sr.request_id
    store.requests[rid] = {"request_id": rid, "key_id": KEY, "status": states.PENDING, "signers": None,
                           "error": None}
    store.statements[rid] = {"request": sr.to_json(), "final": None}
    return rid


def _signing(rt, ports: FakePorts, **kw) -> SignRequests:
    args = dict(shares=None, reader=None, health=None, quarantine=None, request_use=None, pool=None, claims=None,
                coordinate=None, peers=ports.peers)
    return SignRequests(rt, Recorder(rt, ports.slot("audit"), ports.slot("transactions")), **{**args, **kw},
                        **ports.slots("requests", "statements", "key_store", "presigs"))


def _authorizer(rt, ports: FakePorts, on_policy_mismatch) -> JobAuthorizer:
    return JobAuthorizer(rt, Recorder(rt, ports.slot("audit"), ports.slot("transactions")), request_use=None, rate_usage=None,
                         on_policy_mismatch=on_policy_mismatch, **ports.slots("key_store", "replay"))


def test_participant_refuses_a_sign_job_without_its_signed_request():
    users = Users()
    rt, ports = fake_runtime(users.policy), FakePorts()
    authorizer = _authorizer(rt, ports, on_policy_mismatch=lambda: pytest.fail("the policy is the same"))
    spec = {"job_id": JOB, "kind": "sign", "key_id": KEY, "parties": [0, 1], "coordinator": 1,
            "policy_hash": users.policy.hash, "approvals": []}
    with pytest.raises(PolicyDenied) as ei:
        authorizer.authorize(spec, 1)
    assert (ei.value.code, ei.value.denied) == ("bad_request", True)
    # audited as a refusal by the coordinator, and counted
    assert ports.audit.entries[-1] | {} == {"actor": "node-2", "action": "sign_job_refused", "key": KEY,
                                          "subject": JOB, "digest": None, "decision": "denied",
                                          "reason": "bad_request"}
    assert ("policy_denied", "bad_request") in rt.metrics.counted


def test_participant_refuses_a_job_under_another_policy_and_catches_up():
    users = Users()
    rt, ports = fake_runtime(users.policy), FakePorts()
    asked = []
    authorizer = _authorizer(rt, ports, on_policy_mismatch=lambda: asked.append(True))
    spec = {"job_id": JOB, "kind": "presign", "key_id": KEY, "parties": [0, 1], "coordinator": 1,
            "policy_hash": "0" * 64}
    with pytest.raises(PolicyDenied) as ei:
        authorizer.authorize(spec, 1)
    assert ei.value.code == "policy_mismatch"
    assert asked == [True]


def test_a_pending_request_expires_when_the_clock_passes_its_window():
    users = Users()
    clock = FakeClock()
    rt, ports = fake_runtime(users.policy, clock=clock), FakePorts()
    rid = _pending(ports.requests, users, clock.now())
    svc = _signing(rt, ports)
    assert svc._expire_if_due(ports.requests.get_sign_request(rid))["status"] == states.PENDING
    clock.t += 601  # the request's ttl_s is 600
    after = svc._expire_if_due(ports.requests.get_sign_request(rid))
    assert after["status"] == states.EXPIRED
    assert after["error"]["code"] == "expired"
    assert [e["action"] for e in ports.audit.entries] == ["request_expired"]


def test_a_status_change_outside_the_table_changes_nothing():
    users = Users()
    rt, ports = fake_runtime(users.policy), FakePorts()
    rid = _pending(ports.requests, users, rt.clock.now())
    svc = _signing(rt, ports)
    with pytest.raises(states.InvalidTransition) as ei:
        svc._move(rid, states.PENDING, "sign", conditional=True)  # signed without signing
    assert (ei.value.code, ei.value.state, ei.value.event) == ("invalid_transition", "pending", "sign")
    assert ports.requests.requests[rid]["status"] == states.PENDING


class _CountingReader(PayloadReader):
    def __init__(self, rt, ports: FakePorts) -> None:
        super().__init__(rt, replay=ports.slot("replay"))
        self.decoded = 0
        self.checked = 0

    async def decode(self, row, **kw):
        self.decoded += 1
        return await super().decode(row, **kw)

    def tx_check(self, key_id, dec):
        self.checked += 1
        return True, "ok", ""

    def rate_usage(self, key_id, window_s, besides=None) -> int:
        return 0


def test_an_allowed_request_is_decoded_and_checked_once_on_its_way_to_signing():
    users = Users()
    rt, ports = fake_runtime(users.policy), FakePorts()
    rt.faults = FaultPlan(coordinator_faults=True)  # test-only: the nonce below skips the approval
    row = {"key_id": KEY, "public_key": G.to_bytes(), "chain_code": None, "threshold": 2,
           "participants": [0, 1, 2], "epoch": 0}
    reader = _CountingReader(rt, ports)
    ran = []

    async def healthy(indices, **kw):
        return sorted(indices), []

    async def hsm_ok():
        return None

    svc = _signing(
        rt, ports, shares=types.SimpleNamespace(active_key=lambda key_id: row), reader=reader,
        health=types.SimpleNamespace(split_healthy=healthy, require_hsm=hsm_ok),
        quarantine=types.SimpleNamespace(not_quarantined=lambda idx: list(idx)),
        claims=RequestClaims(rt, replay=ports.slot("replay"), peers=ports.peers))
    svc._choose_signers = lambda row, usable, t: usable[:t]
    svc._run = lambda rid, row, dec, *a: ran.append((rid, dec))
    svc.view = lambda req: req
    rt.spawn = lambda coro: coro  # _run is a plain function here: nothing to schedule
    sr = users.request(rt.clock.now(), key_id=KEY, digest=b"\x22" * 32, derivation_path="m",
                       nonce="testfault.skip-approval.1")
    out = asyncio.run(svc.create(types.SimpleNamespace(id="initiator"), KEY, (b"\x22" * 32).hex(), "m",
                                 request=sr.to_json()))
    assert out.new and out.view["status"] == states.SIGNING
    assert (reader.decoded, reader.checked) == (1, 1)
    assert len(ran) == 1 and ran[0][1].items[0].digest == b"\x22" * 32
