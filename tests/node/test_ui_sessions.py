"""The approval console's sign-in and sessions (appliance/ui_sessions.py, issue 17): a passkey
assertion over a single-use, short-lived server challenge opens a session that expires on the
injected clock; each refusal has its exact code and message."""

from __future__ import annotations

import dataclasses

import pytest

from appliance.errors import ServiceError
from appliance.policy import Policy
from appliance.policy.model import ApprovalGroup
from appliance.ui_access import check_read, may_approve, may_read, rule_name
from appliance import ui_sessions
from appliance.ui_sessions import CHALLENGE_TTL_S, SESSION_TTL_S, UISessions
from appliance_client.statements import from_b64url
from appliance.recorder import Recorder
from appliance.storage.node_store import NodeStore
from tests.node.fakes import FakeClock, FakePorts, Users, fake_runtime
from tests.webauthn_soft import FLAG_UP, SoftPasskey

RP = "appliance.example"
ORIGIN = "https://node-1.appliance.example:8443"
CHALLENGE_GONE = ("ui_bad_challenge", "the challenge is unknown, spent or expired: ask for a new one")
NO_SESSION = ("ui_session_required", "sign in with your passkey (no session, or it expired)")


@pytest.fixture(scope="module")
def world():
    users = Users()
    key = SoftPasskey(-7, RP, ORIGIN, label="laptop")
    c = users.policy.canonical()
    for u in c["users"]:
        if u["id"] == "approver":
            u["passkeys"] = [key.policy_entry()]
    c["webauthn"] = {"rp_id": RP, "origins": [ORIGIN]}
    return Policy.from_mapping(c), key


def _sessions(clock, replay=None, ports=None):
    """A node's console sessions over fake ports (``replay``: the node's sign-counter store)."""
    ports = ports or FakePorts()
    rt = fake_runtime(Users().policy, clock=clock)
    return UISessions(clock, replay or ports.slot("replay"),
                      Recorder(rt, ports.slot("audit"), ports.slot("transactions")))


def _refused(code_message, fn, *a, **kw):
    with pytest.raises(ServiceError) as ei:
        fn(*a, **kw)
    assert (ei.value.code, ei.value.message) == code_message
    return ei.value


def test_sign_in_opens_a_session_until_its_ttl(world):
    policy, key = world
    clock = FakeClock()
    s = _sessions(clock)
    c = s.challenge("sign_in")
    token, session = s.sign_in(policy, key.assert_(from_b64url(c, "c", 64)), c)
    assert session.user == "approver" and session.credential == key.id
    assert s.session(token) == session
    clock.t += SESSION_TTL_S - 1
    assert s.session(token).user == "approver"
    clock.t += 1
    _refused(NO_SESSION, s.session, token)
    _refused(NO_SESSION, s.session, None)


def test_a_challenge_is_single_use_short_lived_and_for_its_purpose(world):
    policy, key = world
    clock = FakeClock()
    s = _sessions(clock)
    c = s.challenge("sign_in")
    s.sign_in(policy, key.assert_(from_b64url(c, "c", 64)), c)
    _refused(CHALLENGE_GONE, s.sign_in, policy, key.assert_(from_b64url(c, "c", 64)), c)  # replayed
    late = s.challenge("sign_in")
    clock.t += CHALLENGE_TTL_S
    _refused(CHALLENGE_GONE, s.sign_in, policy, key.assert_(from_b64url(late, "c", 64)), late)
    reg = s.challenge("register")
    _refused(CHALLENGE_GONE, s.sign_in, policy, key.assert_(from_b64url(reg, "c", 64)), reg)


@pytest.mark.parametrize("bend, message", [
    ({"flags": FLAG_UP}, "the sign-in assertion is refused: User verification is required but user was not verified during authentication"),
    ({"origin": "https://evil.example"}, "the sign-in assertion is refused: Unexpected client data origin \"https://evil.example\", expected one of [\'https://node-1.appliance.example:8443\']"),
    ({"rp_id": "evil.example"}, "the sign-in assertion is refused: Unexpected RP ID hash"),
    ({"signer": "other"}, "the sign-in assertion is refused: Could not verify authentication signature"),
])
def test_a_bad_sign_in_assertion_is_refused(world, bend, message):
    policy, key = world
    s = _sessions(FakeClock())
    c = s.challenge("sign_in")
    if bend.get("signer") == "other":
        bend = {"signer": SoftPasskey(-7, RP, ORIGIN)}
    _refused(("ui_sign_in_refused", message), s.sign_in, policy, key.assert_(from_b64url(c, "c", 64), **bend), c)


def test_a_credential_not_in_the_policy_cannot_sign_in(world):
    policy, _ = world
    s = _sessions(FakeClock())
    c = s.challenge("sign_in")
    stranger = SoftPasskey(-7, RP, ORIGIN)
    _refused(("ui_sign_in_refused", "this passkey is not in the policy"), s.sign_in, policy,
             stranger.assert_(from_b64url(c, "c", 64)), c)


def test_a_sign_in_counter_must_increase_as_an_approval_s_does(world, tmp_path):
    """The approvals' counter rule (appliance/passkey_counters.py) at sign-in, in the node's own
    replay store: a cloned authenticator (a counter this node already accepted) is refused with
    webauthn_counter_replay and audited, and opens no session; the counter an approval then
    brings must be above the sign-in's."""
    policy, key = world
    store, ports, clock = NodeStore(tmp_path / "node.db"), FakePorts(), FakeClock()
    try:
        s = _sessions(clock, lambda: store, ports)
        c = s.challenge("sign_in")
        s.sign_in(policy, key.assert_(from_b64url(c, "c", 64), counter=41), c)
        c = s.challenge("sign_in")
        token, _ = s.sign_in(policy, key.assert_(from_b64url(c, "c", 64), counter=42), c)
        c = s.challenge("sign_in")
        name = f"passkey laptop ({key.id[:8]})"
        err = _refused(("webauthn_counter_replay", f"approver's {name}: sign counter 42 is not above one "
                        "this node already accepted"),
                       s.sign_in, policy, key.assert_(from_b64url(c, "c", 64), counter=42), c)
        assert err.denied
        assert ports.audit.entries[-1] == {
            "actor": "approver", "action": "ui_sign_in", "key": None, "subject": None, "digest": None,
            "decision": "denied", "reason": f"webauthn_counter_replay (approver by {name})"}
        assert len(s._sessions) == 2 and s.session(token).user == "approver"
        # the approvals share the record: an approval at the sign-in's counter is a clone too
        assert not store.note_assertion(key.id, 42, "approval", in_order=True)
        assert store.note_assertion(key.id, 43, "approval", in_order=True)
        # an authenticator that keeps no counter (always 0) signs in again and again
        zero = SoftPasskey(-7, RP, ORIGIN, step=0)
        c0 = policy.canonical()
        next(u for u in c0["users"] if u["id"] == "approver")["passkeys"].append(zero.policy_entry())
        pol0 = Policy.from_mapping(c0)
        for _ in range(2):
            c = s.challenge("sign_in")
            s.sign_in(pol0, zero.assert_(from_b64url(c, "c", 64)), c)
    finally:
        store.close()


# -- who reads what in the console (appliance/ui_access.py) ------------------------------------


def test_the_console_shows_a_key_to_who_may_approve_initiate_or_audit_it():
    pol = Users().policy
    admins_only = dataclasses.replace(pol.signing, approvals=(ApprovalGroup(("admin",), 1),))
    pol = dataclasses.replace(pol, key_rules=(("key_" + "b" * 24, admins_only),))
    plain, special = "key_" + "a" * 24, "key_" + "b" * 24
    assert (rule_name(pol, plain), rule_name(pol, special)) == ("[signing]", f"[signing.keys.{special}]")
    assert may_approve(pol, "approver", plain) and not may_approve(pol, "approver", special)
    assert may_approve(pol, "admin", special) and not may_approve(pol, "initiator", plain)
    assert may_read(pol, "initiator", special, "initiator")  # its initiator role
    assert not may_read(pol, "approver", special, "initiator") and not may_read(pol, "nobody", plain, None)
    with pytest.raises(ServiceError) as ei:
        check_read(pol, "approver", {"key_id": special, "initiator": "initiator"})
    # answered exactly as a request that does not exist (no existence oracle)
    assert (ei.value.code, ei.value.message) == ("not_found", "unknown sign request")



def test_repeated_sign_ins_end_only_that_users_oldest_session(monkeypatch):
    """Issue 17 review: a person signing in again and again ends their own oldest session,
    never another person's; with every slot held by others, a sign-in is refused."""
    users = Users(approvers=2)
    keys = {u: SoftPasskey(-7, RP, ORIGIN, label=u) for u in ("approver", "approver2")}
    c = users.policy.canonical()
    for u in c["users"]:
        if u["id"] in keys:
            u["passkeys"] = [keys[u["id"]].policy_entry()]
    c["webauthn"] = {"rp_id": RP, "origins": [ORIGIN]}
    policy = Policy.from_mapping(c)
    s = _sessions(FakeClock())

    def sign_in(who):
        ch = s.challenge("sign_in")
        return s.sign_in(policy, keys[who].assert_(from_b64url(ch, "c", 64)), ch)[0]
    other = sign_in("approver2")
    mine = [sign_in("approver") for _ in range(ui_sessions.MAX_SESSIONS_PER_USER + 1)]
    _refused(NO_SESSION, s.session, mine[0])  # their own oldest went
    assert [s.session(t).user for t in mine[1:]] == ["approver"] * ui_sessions.MAX_SESSIONS_PER_USER
    assert s.session(other).user == "approver2"  # nobody else's
    monkeypatch.setattr(ui_sessions, "MAX_SESSIONS", ui_sessions.MAX_SESSIONS_PER_USER + 1)
    ch = s.challenge("sign_in")
    _refused(("ui_sessions_full", "this node holds as many console sessions as it keeps: try again when one "
              "ends"), s.sign_in, policy, keys["approver2"].assert_(from_b64url(ch, "c", 64)), ch)
    assert s.session(other).user == "approver2"
