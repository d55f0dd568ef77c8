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
from appliance.ui_sessions import CHALLENGE_TTL_S, SESSION_TTL_S, UISessions
from appliance_client.statements import from_b64url
from tests.node.fakes import FakeClock, Users
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


def _refused(code_message, fn, *a, **kw):
    with pytest.raises(ServiceError) as ei:
        fn(*a, **kw)
    assert (ei.value.code, ei.value.message) == code_message
    return ei.value


def test_sign_in_opens_a_session_until_its_ttl(world):
    policy, key = world
    clock = FakeClock()
    s = UISessions(clock)
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
    s = UISessions(clock)
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
    s = UISessions(FakeClock())
    c = s.challenge("sign_in")
    if bend.get("signer") == "other":
        bend = {"signer": SoftPasskey(-7, RP, ORIGIN)}
    _refused(("ui_sign_in_refused", message), s.sign_in, policy, key.assert_(from_b64url(c, "c", 64), **bend), c)


def test_a_credential_not_in_the_policy_cannot_sign_in(world):
    policy, _ = world
    s = UISessions(FakeClock())
    c = s.challenge("sign_in")
    stranger = SoftPasskey(-7, RP, ORIGIN)
    _refused(("ui_sign_in_refused", "this passkey is not in the policy"), s.sign_in, policy,
             stranger.assert_(from_b64url(c, "c", 64)), c)


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
    assert (ei.value.code, ei.value.message) == (
        "ui_not_permitted", "approver may neither approve nor initiate requests on this key (nor audit)")
