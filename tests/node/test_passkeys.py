"""Passkey (WebAuthn) approvals in process (issue 17): the policy's passkeys and [webauthn]
(typed, canonical, carried by a policy update), each refusal with its exact code, ES256 and
Ed25519 accepted, and the sign counter kept per credential in the node's store (real SQLite)
and checked when a node records a decision (audited, naming the passkey)."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import types

import pytest

from appliance.errors import PolicyDenied, ServiceError
from appliance.policy import Approval, Policy, PolicyError, PolicyUpdate, check_approval, summary_hash
from appliance.policy.evaluation import LATER, shown_problem
from appliance.policy.passkeys import Passkey
from appliance.recorder import Recorder
from appliance.signing import states
from appliance.signing.approval_statements import ApprovalStatements
from appliance.signing.reading import PayloadReader
from appliance.signing.requests import SignRequests
from appliance.statements import parse_approval
from appliance.storage import NodeStore
from appliance.tss.group import G
from appliance_client.canonical import canonical_json
from appliance_client.statements import WebAuthnAssertion, b64url
from tests.node.fakes import FakeClock, FakePorts, Users, fake_runtime
from tests.webauthn_soft import FLAG_UP, SoftPasskey

RP = "appliance.example"
ORIGIN = "https://node-1.appliance.example:8443"
KEY = "key_" + "a" * 24


@pytest.fixture(scope="module")
def world():
    users = Users(approvers=2)
    es = SoftPasskey(-7, RP, ORIGIN, label="laptop")
    ed = SoftPasskey(-8, RP, ORIGIN, label="yubikey")
    other = SoftPasskey(-7, RP, ORIGIN, label="phone")  # approver2's
    ctr = SoftPasskey(-7, RP, ORIGIN, label="desk", counter=10)  # the counter test's
    c = users.policy.canonical()
    for u in c["users"]:
        if u["id"] == "approver":
            u["passkeys"] = [es.policy_entry(), ed.policy_entry(), ctr.policy_entry()]
        if u["id"] == "approver2":
            u["passkeys"] = [other.policy_entry()]
    c["webauthn"] = {"rp_id": RP, "origins": [ORIGIN, "https://node-2.appliance.example:8443"]}
    policy = Policy.from_mapping(c)
    users.policy = policy
    return types.SimpleNamespace(users=users, policy=policy, es=es, ed=ed, other=other, ctr=ctr)


def _approval(w, sr, now, approver="approver", decision="approve"):
    return Approval(sr.request.binding(), approver, decision, int(now), int(now) + 600)


def _request(w, now):
    return w.users.request(now, key_id=KEY, digest=b"\x11" * 32, derivation_path="m")


# -- the policy --------------------------------------------------------------------------


def test_passkeys_and_webauthn_are_canonical_and_a_policy_update_carries_them(world):
    p = world.policy
    again = Policy.from_mapping(p.canonical())
    assert again.hash == p.hash and again.user("approver").passkeys == p.user("approver").passkeys
    assert again.webauthn.rp_id == RP and len(again.webauthn.origins) == 2
    toml_again = Policy.from_toml(p.to_toml())
    assert toml_again.hash == p.hash
    # a policy without passkeys keeps its old canonical form (no passkeys, no webauthn keys)
    plain = Users().policy.canonical()
    assert "webauthn" not in plain and all("passkeys" not in u for u in plain["users"])
    # the policy-update statement carries them through the admin quorum's path
    base = dataclasses.replace(p, version=p.version)
    upd = PolicyUpdate(dataclasses.replace(p, version=p.version + 1), base.hash)
    back = PolicyUpdate.from_json(upd.to_json())
    assert back.policy.user("approver").passkeys == p.user("approver").passkeys
    assert back.policy.webauthn == p.webauthn


@pytest.mark.parametrize("bend, message", [
    (lambda e: {**e, "counter": 3}, "[[users]] #2 passkeys[0].counter: unknown key (known: id, public_key, alg, label)"),
    (lambda e: {**e, "alg": -8}, "user approver: passkey public_key is not a Ed25519 EdDSA COSE_Key (its kty, crv and alg must match alg)"),
    (lambda e: {**e, "alg": -257}, "user approver: passkey alg is -7 (ES256, P-256) or -8 (EdDSA, Ed25519)"),
    (lambda e: {**e, "public_key": "AAAA"}, "user approver: passkey public_key is not a COSE_Key"),
    (lambda e: {**e, "id": "a+b"}, "user approver: passkey id is unpadded base64url (at most 1023 bytes)"),
])
def test_a_bad_passkey_entry_is_refused_naming_it(world, bend, message):
    c = world.policy.canonical()
    for u in c["users"]:
        if u["id"] == "approver":
            u["passkeys"] = [bend(next(p for p in u["passkeys"] if p["label"] == "laptop"))]
    with pytest.raises(PolicyError) as ei:
        Policy.from_mapping(c)
    assert str(ei.value) == message


def test_passkeys_need_the_webauthn_table_and_a_credential_belongs_to_one_user(world):
    c = world.policy.canonical()
    del c["webauthn"]
    with pytest.raises(PolicyError, match=r"users have passkeys: the policy needs a \[webauthn\] table"):
        Policy.from_mapping(c)
    c = world.policy.canonical()
    for u in c["users"]:
        if u["id"] == "approver2":
            u["passkeys"] = [world.es.policy_entry()]
    with pytest.raises(PolicyError, match="a passkey id appears twice"):
        Policy.from_mapping(c)
    c = world.policy.canonical()
    c["webauthn"]["extra"] = 1
    with pytest.raises(PolicyError, match="extra"):
        Policy.from_mapping(c)


# -- the assertion: every refusal with its code --------------------------------------------


@pytest.mark.parametrize("which", ["es", "ed"])
def test_es256_and_ed25519_assertions_over_the_statement_are_accepted(world, which):
    now = FakeClock().now()
    sr = _request(world, now)
    a = _approval(world, sr, now)
    key = getattr(world, which)
    signed = dataclasses.replace(a, webauthn=key.assert_(a.challenge()))
    assert check_approval(world.policy, sr.request, signed, now) is None
    # and through JSON, as a body and a job carry it
    back = Approval.from_json(signed.to_json())
    assert back == signed and set(signed.to_json()) == {"statement", "webauthn"}
    assert check_approval(world.policy, sr.request, back, now) is None


def _refusal(world, make):
    now = FakeClock().now()
    sr = _request(world, now)
    a = _approval(world, sr, now)
    signed = dataclasses.replace(a, webauthn=make(world, a, sr, now))
    d = check_approval(world.policy, sr.request, signed, now)
    assert d is not None
    return d.reason, d.message


def test_an_assertion_over_another_statement_is_a_bad_challenge(world):
    def make(w, a, sr, now):
        other = _approval(w, _request(w, now + 1), now)  # the same person's approval of another request
        return w.es.assert_(other.challenge())
    assert _refusal(world, make) == (
        "webauthn_bad_challenge",
        "the assertion's challenge is not SHA-256 of this approval statement (or its type is not webauthn.get)")


def test_a_create_ceremony_is_not_an_approval(world):
    assert _refusal(world, lambda w, a, sr, now: w.es.assert_(a.challenge(), type_="webauthn.create"))[0] == \
        "webauthn_bad_challenge"


def test_an_origin_not_in_the_policy_is_refused(world):
    assert _refusal(world, lambda w, a, sr, now: w.es.assert_(a.challenge(), origin="https://evil.example")) == (
        "webauthn_bad_origin", "origin 'https://evil.example' is not one of [webauthn].origins")


def test_another_rp_id_is_refused(world):
    assert _refusal(world, lambda w, a, sr, now: w.es.assert_(a.challenge(), rp_id="evil.example")) == (
        "webauthn_bad_rp", "rpIdHash is not SHA-256 of [webauthn].rp_id")


def test_user_presence_without_verification_is_refused(world):
    assert _refusal(world, lambda w, a, sr, now: w.es.assert_(a.challenge(), flags=FLAG_UP)) == (
        "webauthn_user_not_verified", "the authenticator did not verify the user (UP and UV flags must be set)")


def test_a_credential_not_in_the_policy_or_not_the_approvers_is_unknown(world):
    stranger = SoftPasskey(-7, RP, ORIGIN)
    reason, message = _refusal(world, lambda w, a, sr, now: stranger.assert_(a.challenge()))
    assert (reason, message) == ("webauthn_unknown_credential",
                                 f"approver has no passkey {stranger.id[:8]} in the policy")
    # approver2's own passkey, used to sign as approver
    reason, _ = _refusal(world, lambda w, a, sr, now: w.other.assert_(a.challenge()))
    assert reason == "webauthn_unknown_credential"


def test_a_signature_by_another_key_is_refused(world):
    def make(w, a, sr, now):
        return w.es.assert_(a.challenge(), signer=w.other)  # the approver's id, another key's signature
    assert _refusal(world, make) == ("webauthn_bad_signature",
                                     "the assertion is not signed by approver's passkey laptop "
                                     f"({world.es.id[:8]})")


def test_an_assertion_field_out_of_bounds_or_not_base64url_is_a_bad_approval():
    good = {"credential_id": "AAAA", "authenticator_data": "AAAA", "client_data_json": "AAAA",
            "signature": "AAAA"}
    with pytest.raises(PolicyError, match="webauthn.signature is unpadded base64url"):
        WebAuthnAssertion.from_json({**good, "signature": "AA=="})
    with pytest.raises(PolicyError, match="webauthn.client_data_json is unpadded base64url"):
        WebAuthnAssertion.from_json({**good, "client_data_json": "A" * 6000})
    with pytest.raises(PolicyError, match="exactly the fields"):
        WebAuthnAssertion.from_json({**good, "user_handle": "AAAA"})


# -- the node: counters in its store, the statement it gives, audit ------------------------


def _service(world, tmp_path):
    clock = FakeClock()
    rt = fake_runtime(world.policy, clock=clock)
    store = NodeStore(tmp_path / "node.db")
    ports = FakePorts()
    row = {"key_id": KEY, "public_key": G.to_bytes(), "chain_code": None, "threshold": 2,
           "participants": [0, 1, 2], "epoch": 0}

    async def healthy(indices, **kw):
        return sorted(indices), []

    async def decode_request(row, request, payload, network):
        return "decoded"

    svc = SignRequests(
        rt, Recorder(rt, ports.slot("audit"), ports.slot("transactions")),
        shares=types.SimpleNamespace(active_key=lambda key_id: row),
        reader=types.SimpleNamespace(decode_request=decode_request, rate_usage=lambda *a, **kw: 0),
        health=types.SimpleNamespace(split_healthy=healthy),
        quarantine=types.SimpleNamespace(not_quarantined=lambda idx: list(idx)),
        request_use=None, pool=None, coordinate=None, claims=None, peers=ports.peers,
        replay=lambda: store, **ports.slots("requests", "statements", "key_store", "presigs"))
    svc._run = lambda *a: None
    svc.view = lambda req: req
    rt.spawn = lambda call: call

    def new_request():
        sr = _request(world, clock.now())
        rid = sr.request_id
        ports.requests.requests[rid] = {"request_id": rid, "key_id": KEY, "status": states.PENDING,
                                        "signers": None, "error": None}
        ports.requests.statements[rid] = {"request": sr.to_json(), "final": None, "payload": None,
                                          "network": None}
        return sr
    return svc, ports, store, new_request, rt


def _post(svc, sr, approval):
    route = {"approve": "approval", "reject": "rejection"}[approval.decision]
    return asyncio.run(svc.decide(types.SimpleNamespace(id=approval.approver), sr.request_id, route,
                                  {"approval": approval.to_json()}))


def test_the_node_records_the_counter_and_refuses_one_that_does_not_increase(world, tmp_path):
    svc, ports, store, new_request, rt = _service(world, tmp_path)
    key = world.ctr
    try:
        sr1 = new_request()
        a1 = _approval(world, sr1, rt.clock.now())
        a1 = dataclasses.replace(a1, webauthn=key.assert_(a1.challenge()))  # counter 11
        assert _post(svc, sr1, a1)["status"] == states.PENDING  # approver2 still to approve
        entry = ports.audit.entries[-1]
        assert (entry["action"], entry["decision"], entry["reason"]) == (
            "approval", "accepted", f"pending_approval (approver by passkey desk ({key.id[:8]}))")
        # the same assertion checked again (a new decision on the request, a signer's job) passes
        assert store.note_assertion(key.id, 11, _assertion_id(a1.webauthn))
        # a second request: an assertion with counter 11 again (a cloned authenticator)
        sr2 = new_request()
        a2 = _approval(world, sr2, rt.clock.now())
        a2 = dataclasses.replace(a2, webauthn=key.assert_(a2.challenge(), counter=11))
        with pytest.raises(PolicyDenied) as ei:
            _post(svc, sr2, a2)
        assert (ei.value.code, ei.value.message) == (
            "webauthn_counter_replay",
            f"approver's passkey desk ({key.id[:8]}): sign counter 11 is not above one this node "
            "already accepted")
        entry = ports.audit.entries[-1]
        assert (entry["action"], entry["decision"], entry["reason"]) == (
            "approval", "denied", f"webauthn_counter_replay (approver by passkey desk ({key.id[:8]}))")
        assert sr2.request_id not in ports.requests.decided
        # a higher counter is accepted
        a3 = dataclasses.replace(a2, webauthn=key.assert_(a2.challenge()))  # counter 12
        assert _post(svc, sr2, a3)["status"] == states.PENDING
    finally:
        store.close()


def test_an_authenticator_without_a_counter_may_stay_at_zero_but_not_fall_back_to_it(tmp_path):
    store = NodeStore(tmp_path / "n.db")
    try:
        for in_order in (True, False):
            cred = f"cred-{in_order}"
            assert store.note_assertion(cred, 0, "a", in_order=in_order)
            assert store.note_assertion(cred, 0, "b", in_order=in_order)
            assert store.note_assertion(cred, 5, "c", in_order=in_order)
            assert not store.note_assertion(cred, 0, "d", in_order=in_order)
            assert not store.note_assertion(cred, 5, "e", in_order=in_order)
            assert store.note_assertion(cred, 0, "a", in_order=in_order)  # one seen before passes again
        assert store.note_assertion("other", 1, "a")
    finally:
        store.close()


def test_a_signer_takes_counters_in_any_order_but_never_one_twice(tmp_path):
    """Two requests approved with one passkey (counters 5 then 6) may reach a signer in the
    other order (the first waited for a second approver): a signer refuses a counter that
    another assertion had, not one below the highest; the node recording decisions refuses
    one that does not increase."""
    store = NodeStore(tmp_path / "n.db")
    try:
        assert store.note_assertion("cred", 6, "b", in_order=False)
        assert store.note_assertion("cred", 5, "a", in_order=False)
        assert not store.note_assertion("cred", 5, "clone", in_order=False)
        assert not store.note_assertion("cred", 4, "late", in_order=True)
        assert store.note_assertion("cred", 7, "c", in_order=True)
    finally:
        store.close()
    fake = FakePorts().replay
    assert fake.note_assertion("cred", 6, "b", in_order=False) and fake.note_assertion("cred", 5, "a", in_order=False)
    assert not fake.note_assertion("cred", 5, "clone", in_order=False)
    assert not fake.note_assertion("cred", 4, "late")


def _assertion_id(wa) -> str:
    return hashlib.sha256(wa.authenticator_data + wa.client_data_json + wa.signature).hexdigest()


def test_the_approval_statement_is_the_callers_decision_and_its_challenge(world, tmp_path):
    svc, ports, store, new_request, rt = _service(world, tmp_path)
    try:
        sr = new_request()

        async def read(rid):
            return {"status": states.PENDING, "request": ports.requests.statements[rid]["request"]}
        got = asyncio.run(ApprovalStatements(rt, read).statement(types.SimpleNamespace(id="approver"),
                                                                 sr.request_id, "approve"))
        a = Approval.from_statement(got["statement"])
        assert (a.approver, a.decision, a.binding) == ("approver", "approve", sr.request.binding())
        assert a.expires_at - a.signed_at == world.policy.signing.approval_ttl_s
        assert got["challenge"] == b64url(a.challenge())
        assert got["credential_ids"] == [p.id for p in world.policy.user("approver").passkeys]
        assert got["rp_id"] == RP
        # signed by the passkey and posted, it counts
        signed = dataclasses.replace(a, webauthn=world.ed.assert_(a.challenge()))
        assert _post(svc, sr, signed)["status"] == states.PENDING
        with pytest.raises(ServiceError) as ei:
            asyncio.run(ApprovalStatements(rt, read).statement(types.SimpleNamespace(id="approver"),
                                                               sr.request_id, "cancel"))
        assert (ei.value.code, ei.value.message) == ("bad_decision", "decision is approve or reject")
    finally:
        store.close()


def test_passkey_names_in_the_policy_are_label_and_id_prefix(world):
    pk = world.policy.user("approver").passkeys
    assert {p.name for p in pk} == {f"passkey laptop ({world.es.id[:8]})", f"passkey yubikey ({world.ed.id[:8]})",
                                    f"passkey desk ({world.ctr.id[:8]})"}
    assert all(isinstance(p, Passkey) for p in pk)


def test_a_key_operation_is_not_approved_with_a_passkey(world):
    """Passkeys approve sign requests; a key operation's approval route refuses one (the
    approval-statement route serves sign requests only)."""
    now = FakeClock().now()
    sr = _request(world, now)
    a = _approval(world, sr, now)
    body = {"approval": dataclasses.replace(a, webauthn=world.es.assert_(a.challenge())).to_json()}
    with pytest.raises(ServiceError) as ei:
        parse_approval(None, body, "approve", types.SimpleNamespace(id="approver"), passkeys=False)
    assert (ei.value.code, ei.value.message) == (
        "bad_approval", "a key operation is approved with the admin's key file (passkeys approve sign requests)")
    assert parse_approval(None, body, "approve", types.SimpleNamespace(id="approver")).webauthn is not None


# -- a rejection's reason: signed with it ------------------------------------------------------


def test_a_rejection_signs_its_reason_and_a_statement_without_one_is_unchanged(world):
    sr = _request(world, 1_000)
    plain = Approval(sr.request.binding(), "approver", "reject", 1_000, 1_600)
    # no reason: exactly the statement (hence signature and challenge) key-file approvals had
    assert "reason" not in plain.statement() and plain.message() == canonical_json(
        {"type": "appliance/approval/v1", **sr.request.binding(), "approver": "approver",
         "decision": "reject", "signed_at": 1_000, "expires_at": 1_600})
    why = dataclasses.replace(plain, reason="wrong destination: not our cold wallet")
    assert why.statement()["reason"] == "wrong destination: not our cold wallet"
    assert why.challenge() != plain.challenge()  # the passkey signs the reason
    assert Approval.from_statement(why.statement()) == why
    assert Approval.from_json({"statement": why.statement(), "signature": "00" * 64}).reason == why.reason


@pytest.mark.parametrize("decision, reason, message", [
    ("approve", "fine", "only a rejection carries a reason"),
    ("reject", "x" * 201, "reason is 1 to 200 printable characters, no line breaks, not starting or ending with a space"),
    ("reject", "two\nlines", "reason is 1 to 200 printable characters, no line breaks, not starting or ending with a space"),
    ("reject", " padded", "reason is 1 to 200 printable characters, no line breaks, not starting or ending with a space"),
    ("reject", "bidi \u202e trick", "reason is 1 to 200 printable characters, no line breaks, not starting or ending with a space"),
])
def test_a_reason_outside_its_grammar_is_refused(world, tmp_path, decision, reason, message):
    sr = _request(world, 1_000)
    with pytest.raises(PolicyError) as ei:
        Approval(sr.request.binding(), "approver", decision, 1_000, 1_600, reason=reason)
    assert str(ei.value) == message
    svc, ports, store, new_request, rt = _service(world, tmp_path)
    try:
        sr = new_request()

        async def read(rid):
            return {"status": states.PENDING, "request": ports.requests.statements[rid]["request"]}
        with pytest.raises(ServiceError) as ei:
            asyncio.run(ApprovalStatements(rt, read).statement(types.SimpleNamespace(id="approver"),
                                                               sr.request_id, decision, reason))
        assert (ei.value.code, ei.value.message) == ("bad_reason", message)
    finally:
        store.close()


def test_a_passkey_rejection_carries_its_reason_and_one_swapped_is_refused(world, tmp_path):
    """The statement the node gives has the reason; an assertion over it posted with another
    reason (or none) does not match; posted as given, the request closes with the reason."""
    svc, ports, store, new_request, rt = _service(world, tmp_path)
    try:
        sr = new_request()

        async def read(rid):
            return {"status": states.PENDING, "request": ports.requests.statements[rid]["request"]}
        got = asyncio.run(ApprovalStatements(rt, read).statement(
            types.SimpleNamespace(id="approver"), sr.request_id, "reject", "not in the payment run"))
        assert got["statement"]["reason"] == "not in the payment run"
        a = Approval.from_statement(got["statement"])
        wa = world.es.assert_(a.challenge())
        swapped = dataclasses.replace(a, reason="approved by phone", webauthn=wa)
        with pytest.raises(PolicyDenied) as ei:
            _post(svc, sr, swapped)
        assert ei.value.code == "webauthn_bad_challenge"
        with pytest.raises(PolicyDenied) as ei:
            _post(svc, sr, dataclasses.replace(a, reason="", webauthn=wa))
        assert ei.value.code == "webauthn_bad_challenge"
        _post(svc, sr, dataclasses.replace(a, webauthn=wa))
        closed = ports.requests.requests[sr.request_id]
        assert closed["status"] == states.REJECTED and closed["error"]["message"] == \
            "approver rejected the request: not in the payment run", closed
    finally:
        store.close()


# -- a request held by another node: only its recorded owner is asked, and its answer checked --


def _forwarding(world, tmp_path, answer):
    """A node (index 0) answering for a request kept by node 2 (its recorded claim), with a
    real PayloadReader: the decoded summary it shows is its own."""
    rt = fake_runtime(world.policy)
    store = NodeStore(tmp_path / "node.db")
    ports = FakePorts()
    ports.peers.answer = answer
    row = {"key_id": KEY, "public_key": G.to_bytes(), "chain_code": None, "threshold": 2,
           "participants": [0, 1, 2], "epoch": 0, "status": "active"}
    svc = SignRequests(
        rt, Recorder(rt, ports.slot("audit"), ports.slot("transactions")),
        shares=types.SimpleNamespace(known_key=lambda key_id: row), reader=PayloadReader(rt, replay=lambda: store),
        health=None, quarantine=None, request_use=None, pool=None, coordinate=None, claims=None,
        peers=ports.peers, replay=lambda: store, **ports.slots("requests", "statements", "key_store", "presigs"))
    return svc, ports, store


def _held_elsewhere(world, store, text="pay 1 BTC to bc1qexample"):
    sr = world.users.request(1_700_000_000, key_id=KEY, payload=text, payload_type="message",
                             derivation_path="m")
    store.claim_request(sr.request_id, "initiator", sr.request.nonce, "content", 2)
    honest = {"request_id": sr.request_id, "key_id": KEY, "status": states.PENDING, "initiator": "initiator",
              "request": sr.to_json(), "payload": text, "payload_type": "message",
              "decoded": {"payload_type": "message", "summary": "what the owner claims"}, "decisions": []}
    return sr, honest


@pytest.mark.parametrize("lie, message", [
    ("other_id", "it names another request"),
    ("payload", "the payload does not match the request's payload_hash"),
    ("forged", "the request is not signed by its initiator"),
    ("no_request", "no well-formed signed request"),
])
def test_a_lying_owner_is_refused_and_an_honest_one_decoded_here(world, tmp_path, lie, message):
    sr = None

    def answer(peer, method, path, body):
        out = dict(honest)
        if lie == "other_id":
            out["request_id"] = "req_" + "0" * 32
        elif lie == "payload":
            out["payload"] = "pay 1 BTC to bc1qattacker"
        elif lie == "forged":
            stmt = dict(sr.to_json()["statement"], derivation_path="m/1")
            out["request"] = {"statement": stmt, "signature": sr.to_json()["signature"]}
        elif lie == "no_request":
            out.pop("request")
        return out

    svc, ports, store = _forwarding(world, tmp_path, answer)
    try:
        sr, honest = _held_elsewhere(world, store)
        with pytest.raises(ServiceError) as ei:
            asyncio.run(svc.get(sr.request_id))
        assert (ei.value.code, ei.value.message) == (
            "peer_view_invalid", f"the owner's answer for the request is refused: {message}")
        assert [s[:2] for s in ports.peers.sent] == [("node-3", "GET")]  # the recorded owner only
    finally:
        store.close()


def test_an_honest_owners_view_is_shown_with_this_nodes_decode(world, tmp_path):
    got = {}
    svc, ports, store = _forwarding(world, tmp_path, lambda *a: dict(got["honest"]))
    try:
        sr, got["honest"] = _held_elsewhere(world, store)
        view = asyncio.run(svc.get(sr.request_id))
        assert view["decoded"]["payload_type"] == "message" and view["decoded"] != got["honest"]["decoded"]
        assert "payload" not in view and view["request"] == sr.to_json()
        assert [s[:2] for s in ports.peers.sent] == [("node-3", "GET")]
        # a request this node holds no claim of is not asked of anyone
        with pytest.raises(ServiceError) as ei:
            asyncio.run(svc.get("req_" + "1" * 32))
        assert (ei.value.code, ei.value.message) == ("not_found", "unknown sign request")
        assert len(ports.peers.sent) == 1
    finally:
        store.close()


# -- an approval binds what its approver was shown (issue 17 review, finding 2) ---------------


def test_an_approval_binds_the_decoded_summary_and_network_this_node_decoded(world, tmp_path):
    svc, ports, store, new_request, rt = _service(world, tmp_path)
    decoded = {"payload_type": "eth_tx", "chain": "ethereum", "transfers": [{"amount": "5", "destination": "0xabc"}]}
    try:
        def shown(sr):
            ports.requests.statements[sr.request_id].update(decoded=decoded, network="mainnet")
            return sr

        async def read(rid):
            st = ports.requests.statements[rid]
            return {"status": states.PENDING, "request": st["request"], "decoded": st["decoded"],
                    "network": st["network"]}
        sr = shown(new_request())
        got = asyncio.run(ApprovalStatements(rt, read).statement(types.SimpleNamespace(id="approver"),
                                                                 sr.request_id, "approve"))
        a = Approval.from_statement(got["statement"])
        assert (a.binding["summary_hash"], a.binding["network"]) == (
            hashlib.sha256(canonical_json(decoded)).hexdigest(), "mainnet")
        assert summary_hash(decoded) == a.binding["summary_hash"]
        assert _post(svc, sr, dataclasses.replace(a, webauthn=world.ed.assert_(a.challenge())))["status"] \
            == states.PENDING
        # a statement over another summary, or another network, is for another request
        for field, value, differ in (("summary_hash", summary_hash({**decoded, "chain": "other"}), "summary_hash"),
                                     ("network", "testnet", "network")):
            sr2 = shown(new_request())
            bad = Approval({**sr2.request.binding(summary_hash(decoded), "mainnet"), field: value}, "approver",
                           "approve", int(rt.clock.now()), int(rt.clock.now()) + 600)
            with pytest.raises(PolicyDenied) as ei:
                _post(svc, sr2, dataclasses.replace(bad, webauthn=world.ed.assert_(bad.challenge())))
            assert (ei.value.code, ei.value.message) == (
                "approval_for_other_request", f"approver's approve was made for another request ({differ} differ)")
        # a signer checks them against its own decode once it has decoded the payload
        ok = _approval(world, sr, rt.clock.now())
        ok = dataclasses.replace(ok, binding=sr.request.binding(summary_hash(decoded), "mainnet"))
        ok = dataclasses.replace(ok, webauthn=world.ed.assert_(ok.challenge()))
        assert check_approval(world.policy, sr.request, ok, rt.clock.now(), shown=LATER) is None
        assert shown_problem([ok], (summary_hash(decoded), "mainnet")) is None
        lie = shown_problem([ok], (summary_hash({**decoded, "chain": "other"}), "mainnet"))
        assert (lie.reason, lie.message) == (
            "approval_for_other_request", "approver's approve was made for another request (summary_hash differ)")
    finally:
        store.close()
