"""Policy: parsing and hash, signed statements, the evaluator's matrix, policy updates."""

from __future__ import annotations

import importlib
import itertools
import json
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from appliance import policy as P
from appliance.canonical import canonical_json, sha256_hex
from appliance.policy import (
    Approval,
    Policy,
    PolicyDenied,
    PolicyError,
    PolicyUpdate,
    SignedRequest,
    evaluate,
    make_approval,
    make_request,
)
from appliance.policy.evaluation import in_hours

NOW = 1_800_000_000  # 2027-01-15T08:00:00Z
DIGEST = bytes(range(32))


def _pem(priv) -> str:
    return priv.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@pytest.fixture(scope="module")
def keys():
    out = {}
    for i, uid in enumerate(["initiator", "approver", "approver2", "admin", "admin2", "admin3",
                             "auditor", "both"]):
        out[uid] = ed25519.Ed25519PrivateKey.generate() if i % 2 == 0 else \
            ec.generate_private_key(ec.SECP256R1())
    return out


def policy_toml(keys, extra: str = "", signing: str = "") -> str:
    roles = {"initiator": ["initiator"], "approver": ["approver"], "approver2": ["approver"],
             "admin": ["admin"], "admin2": ["admin"], "admin3": ["admin"],
             "auditor": ["auditor"], "both": ["initiator", "approver"]}
    users = "\n".join(
        f'[[users]]\nid = "{u}"\nroles = {json.dumps(roles[u])}\npublic_key = """{_pem(k)}"""\n'
        for u, k in keys.items())
    return f"""
[policy]
cluster_id = "test"
version = 3

{users}

[signing]
approvals = [{{ roles = ["approver"], count = 1 }}]
request_ttl_s = 3600
approval_ttl_s = 1800
max_signatures = 5
window_s = 3600
derivation_paths = ["m", "m/0/*", "m/44'/0'/0'/**"]
allow_raw_digest = true
{signing}

[signing.keys."key_strict"]
approvals = [{{ roles = ["approver"], count = 2 }}]
allow_raw_digest = false
hours_utc = [9, 17]

[key_changes]
roles = ["admin"]
quorum = 2

[policy_change]
roles = ["admin"]
quorum = 2
{extra}
"""


@pytest.fixture(scope="module")
def pol(keys) -> Policy:
    return Policy.from_toml(policy_toml(keys))


def req(pol, keys, who="initiator", now=NOW, ttl=600, **kw) -> SignedRequest:
    kw.setdefault("key_id", "key_1")
    if kw.get("action", "sign") == "sign" and "payload" not in kw:
        kw.setdefault("digest", DIGEST)
    return make_request(keys[who], cluster_id=pol.cluster_id, policy_hash=pol.hash,
                        initiator=who, now=now, ttl_s=ttl, **kw)


def appr(keys, sr, who="approver", now=NOW, ttl=600, decision="approve") -> Approval:
    return make_approval(keys[who], sr.request, approver=who, now=now, ttl_s=ttl,
                         decision=decision)


# --------------------------------------------------------------------------- parsing


def test_hash_ignores_spelling_but_not_meaning(keys, pol):
    text = policy_toml(keys)
    # comments, order of users and PEM vs raw key spelling do not change the hash
    raw = text.replace(_pem(keys["admin"]), P.UserKey.from_key(keys["admin"].public_key()).text)
    assert Policy.from_toml("# a comment\n" + raw).hash == pol.hash
    assert Policy.from_toml(pol.to_toml()).hash == pol.hash
    assert Policy.from_json(json.dumps(pol.canonical())).hash == pol.hash
    # any change of meaning does
    assert Policy.from_toml(text.replace("version = 3", "version = 4")).hash != pol.hash
    assert Policy.from_toml(text.replace("count = 2", "count = 1")).hash != pol.hash
    assert pol.hash == sha256_hex(pol.canonical_bytes())
    assert pol.canonical_bytes() == canonical_json(json.loads(pol.canonical_bytes()))


def test_rules_per_key_inherit_default(pol):
    strict, default = pol.rule_for("key_strict"), pol.rule_for("key_other")
    assert strict.approvals == (P.ApprovalGroup(("approver",), 2),)
    assert strict.max_signatures == default.max_signatures == 5
    assert strict.derivation_paths == default.derivation_paths
    assert not strict.allow_raw_digest and default.allow_raw_digest


@pytest.mark.parametrize("bad, msg", [
    ('[policy]\ncluster_id = "x"\n[signing]\nbogus = 1', r"^\[signing\] bogus: unknown key \(known: initiator_roles, "),
    ('[policy]\ncluster_id = "x"\nversion = -1', "version"),
    ('[policy]\ncluster_id = "x"\n[signing]\nderivation_paths = ["m/**/0"]', "may only end"),
    ('[policy]\ncluster_id = "x"\n[signing]\nhours_utc = [25, 3]', "hours_utc"),
    ('[policy]\ncluster_id = "x"\n[key_changes]\nquorum = 1', "could never"),
    ('[policy]\ncluster_id = "x"\n[[users]]\nid = "a"\nroles = []\npublic_key = "zz"', "hex"),
    ("not toml [", "TOML"),
])
def test_bad_policy_refused(bad, msg):
    with pytest.raises(PolicyError, match=msg):
        Policy.from_toml(bad)


def test_user_keys_pem_and_raw():
    ed = ed25519.Ed25519PrivateKey.generate()
    p = ec.generate_private_key(ec.SECP256R1())
    ed_raw = P.UserKey.from_key(ed.public_key()).raw
    for text in (_pem(ed), ed_raw.hex(), "ed25519:" + ed_raw.hex()):
        k = P.UserKey.parse(text)
        assert k.alg == "ed25519" and k.verify(b"m", ed.sign(b"m")) and not k.verify(b"x", ed.sign(b"m"))
    unc = p.public_key().public_bytes(serialization.Encoding.X962,
                                      serialization.PublicFormat.UncompressedPoint)
    for text in (_pem(p), unc.hex(), "p256:" + unc.hex()):
        k = P.UserKey.parse(text)
        assert k.alg == "p256" and len(k.raw) == 33
        assert k.verify(b"m", P.sign_message(p, b"m"))
    with pytest.raises(PolicyError):
        P.UserKey.parse(_pem(ec.generate_private_key(ec.SECP256K1())))


def test_paths():
    assert P.normalize_path(None) == "m"
    assert P.normalize_path("m/44h/0H/1") == "m/44'/0'/1"
    for pat, path, ok in [("m", "m", True), ("m", "m/0", False), ("m/0/*", "m/0/7", True),
                          ("m/0/*", "m/0/7'", False), ("m/0/*'", "m/0/7'", True),
                          ("m/**", "m", True), ("m/44'/**", "m/44'/0/1", True),
                          ("m/44'/**", "m/45'/0", False), ("m/0/*", "m/0/1/2", False)]:
        assert P.path_matches(pat, path) is ok, (pat, path)
    for bad in ("m/01", "m/-1", "m/2147483648", "n/0", "m//0", "m/0''"):
        with pytest.raises(PolicyError):
            P.parse_path(bad)


# --------------------------------------------------------------------------- statements


def test_approval_encoding_is_unambiguous(keys, pol):
    base = req(pol, keys).request
    variants = [
        replace(base, key_id="key_1m", derivation_path="m"),
        replace(base, key_id="key_", derivation_path="m/1"),
        replace(base, derivation_path="m/0/1"),
        replace(base, digest="00" * 32),
        replace(base, nonce=base.nonce + "0"),
        replace(base, expires_at=base.expires_at + 1),
        replace(base, initiator="both"),
        replace(base, cluster_id="test2"),
        replace(base, policy_hash="11" * 32),
        replace(base, digest=None, payload_type="psbt", payload_hash=DIGEST.hex()),
    ]
    msgs = {r.message() for r in [base, *variants]}
    assert len(msgs) == len(variants) + 1
    # the id is the idempotency key (cluster, initiator, nonce); the content hash is what a
    # retry under it must repeat: every field but the times and the policy hash
    assert len({r.request_id for r in [base, *variants]}) == 4
    assert {r.request_id for r in [base, *variants[:4], *variants[5:6], *variants[8:]]} == {base.request_id}
    contents = {r.content_hash() for r in [base, *variants]}
    assert len(contents) == len(variants) + 1 - 2
    assert base.content_hash() == variants[5].content_hash() == variants[8].content_hash()
    assert replace(base, created_at=base.created_at + 2, expires_at=base.expires_at + 2).content_hash() \
        == base.content_hash()
    # approval statements: every field is in the signed bytes and the decision changes them
    a = make_approval(keys["approver"], base, approver="approver", now=NOW, ttl_s=60)
    msgs = {a.message()}
    for field, value in [("approver", "approver2"), ("decision", "reject"), ("signed_at", NOW + 1),
                         ("expires_at", NOW + 61)]:
        msgs.add(replace(a, **{field: value}).message())
    for k in a.binding:
        b = dict(a.binding)
        b[k] = "x" if b[k] is None else ("req_x" if k == "request_id" else None)
        msgs.add(replace(a, binding=b).message())
    assert len(msgs) == 5 + len(a.binding)
    # a request statement can never be read as an approval statement and vice versa
    assert json.loads(base.message())["type"] != json.loads(a.message())["type"]
    with pytest.raises(PolicyError):
        Approval.from_json({"statement": base.statement(), "signature": "00"})
    with pytest.raises(PolicyError):
        P.Request.from_statement(a.statement())


def test_statements_round_trip_and_strict_parsing(keys, pol):
    sr = req(pol, keys, derivation_path="m/0/5")
    assert SignedRequest.from_json(json.dumps(sr.to_json())) == sr
    a = appr(keys, sr)
    assert Approval.from_json(json.dumps(a.to_json()).encode()) == a
    assert sr.request_id == req(pol, keys, derivation_path="m/0/5", nonce=sr.request.nonce).request_id
    st = sr.to_json()
    for mutate in (lambda s: s.update(extra=1), lambda s: s.pop("nonce"),
                   lambda s: s.update(created_at=1.5), lambda s: s.update(digest="AB" * 32),
                   lambda s: s.update(derivation_path="m/0h"), lambda s: s.update(params={})):
        s = json.loads(json.dumps(st))
        mutate(s["statement"])
        with pytest.raises(PolicyError):
            SignedRequest.from_json(s)
    with pytest.raises(PolicyError):
        SignedRequest.from_json('{"statement": {}, "statement": {}, "signature": ""}')


# --------------------------------------------------------------------------- the matrix


def test_no_approval_is_pending(keys, pol):
    sr = req(pol, keys)
    d = evaluate(pol, sr, [], NOW)
    assert d.pending and d.reason == "pending_approval" and d.missing == ((("approver",), 1),)
    with pytest.raises(PolicyDenied) as e:
        d.require_allowed()
    assert e.value.code == "pending_approval" and e.value.denied  # a refusal: HTTP 403


def test_one_approver_allows(keys, pol):
    sr = req(pol, keys)
    d = evaluate(pol, sr, [appr(keys, sr)], NOW + 10)
    assert d.allowed and d.reason is None and d.approvers == ("approver",)
    assert d.require_allowed() is d


def test_self_approval(keys, pol):
    sr = req(pol, keys, who="both")  # holds initiator and approver
    d = evaluate(pol, sr, [appr(keys, sr, who="both")], NOW)
    assert d.denied and d.reason == "self_approval" and d.subject == "both"


def test_approver_without_role(keys, pol):
    sr = req(pol, keys)
    for who in ("admin", "auditor"):
        d = evaluate(pol, sr, [appr(keys, sr, who=who)], NOW)
        assert d.denied and d.reason == "missing_role" and d.subject == who
    d = evaluate(pol, req(pol, keys, who="approver"), [], NOW)  # initiator without the role
    assert d.denied and d.reason == "missing_role"


def test_same_approver_twice(keys, pol):
    sr = req(pol, keys)
    a1, a2 = appr(keys, sr), appr(keys, sr, now=NOW + 1)
    d = evaluate(pol, sr, [a1, a2], NOW + 2)
    assert d.denied and d.reason == "duplicate_approver"
    assert P.check_approval(pol, sr.request, a2, NOW + 2, existing=[a1]).reason == "duplicate_approver"


def test_distinct_people_needed(keys, pol):
    at_ten = NOW - NOW % 86400 + 10 * 3600
    sr = req(pol, keys, key_id="key_strict", payload=b"psbt", payload_type="psbt", now=at_ten)
    d = evaluate(pol, sr, [appr(keys, sr, now=at_ten)], at_ten)
    assert d.pending and d.missing == ((("approver",), 1),)
    d = evaluate(pol, sr, [appr(keys, sr, now=at_ten), appr(keys, sr, "approver2", now=at_ten)],
                 at_ten)
    assert d.allowed and d.approvers == ("approver", "approver2")


def test_approval_for_another_request(keys, pol):
    sr, other = req(pol, keys), req(pol, keys, digest=b"\x07" * 32)
    d = evaluate(pol, sr, [appr(keys, other)], NOW)
    assert d.denied and d.reason == "approval_for_other_request"
    # a binding copied from the right request but re-signed fields of another: signature fails
    a = appr(keys, other)
    forged = replace(a, binding=sr.request.binding())
    assert evaluate(pol, sr, [forged], NOW).reason == "bad_signature"
    # another cluster's or policy's approval of the "same" request
    moved = replace(a, binding={**sr.request.binding(), "policy_hash": "22" * 32})
    assert evaluate(pol, sr, [moved], NOW).reason == "approval_for_other_request"


def test_expired_request_and_expired_approval(keys, pol):
    sr = req(pol, keys, ttl=600)
    a = appr(keys, sr, ttl=60)
    assert evaluate(pol, sr, [a], NOW + 59).allowed
    d = evaluate(pol, sr, [a], NOW + 60)  # the approval lapsed: it no longer counts
    assert d.pending and "expired" in d.message
    assert P.check_approval(pol, sr.request, a, NOW + 60).reason == "expired"
    assert evaluate(pol, sr, [], NOW + 600).reason == "expired"
    # the policy's ttl caps what the initiator asked for (3600 s)
    long = req(pol, keys, ttl=10 * 86400)
    assert evaluate(pol, long, [appr(keys, long, now=NOW + 3599)], NOW + 3599).allowed
    assert evaluate(pol, long, [appr(keys, long, now=NOW + 3600)], NOW + 3600).reason == "expired"
    # dated in the future
    assert evaluate(pol, req(pol, keys, now=NOW + 3600), [], NOW).reason == "not_yet_valid"


def test_rate_limit(keys, pol):
    sr = req(pol, keys)
    a = appr(keys, sr)
    assert evaluate(pol, sr, [a], NOW, usage=4).allowed
    d = evaluate(pol, sr, [a], NOW, usage=5)
    assert d.denied and d.reason == "rate_limited"
    seen = []

    def usage(key_id, window_s):
        seen.append((key_id, window_s))
        return 7

    assert evaluate(pol, sr, [], NOW, usage=usage).reason == "rate_limited"
    assert seen == [("key_1", 3600)]


def test_path_not_allowed(keys, pol):
    for path in ("m/1", "m/0/1/2", "m/44'/1'/0'"):
        sr = req(pol, keys, derivation_path=path)
        assert evaluate(pol, sr, [appr(keys, sr)], NOW).reason == "path_not_allowed", path
    for path in ("m", "m/0/9", "m/44'/0'/0'/0/3"):
        sr = req(pol, keys, derivation_path=path)
        assert evaluate(pol, sr, [appr(keys, sr)], NOW).allowed, path


def test_hours_and_raw_digest(keys, pol):
    day = NOW - NOW % 86400
    sr = req(pol, keys, key_id="key_strict", now=day + 10 * 3600)
    assert evaluate(pol, sr, [], day + 10 * 3600).reason == "raw_digest_forbidden"
    for hour, reason in ((8, "outside_hours"), (17, "outside_hours"), (9, "pending_approval"),
                         (16, "pending_approval")):
        t = day + hour * 3600 + 59
        sr = req(pol, keys, key_id="key_strict", payload=b"x", payload_type="eth_tx", now=t)
        assert evaluate(pol, sr, [], t).reason == reason, hour
    assert in_hours((22, 6), day + 23 * 3600) and in_hours((22, 6), day + 5 * 3600)
    assert not in_hours((22, 6), day + 12 * 3600)


@pytest.mark.parametrize("decision, who, reason", [
    ("reject", "approver", "rejected"), ("cancel", "initiator", "cancelled"),
    ("cancel", "approver", "not_initiator"), ("reject", "initiator", "self_approval"),
])
def test_rejected_and_cancelled(keys, pol, decision, who, reason):
    sr = req(pol, keys)
    d = evaluate(pol, sr, [appr(keys, sr, who="approver2"), appr(keys, sr, who=who,
                                                                 decision=decision)], NOW)
    assert d.denied and d.reason == reason


def test_signatures_and_users(keys, pol):
    sr = req(pol, keys)
    bad = SignedRequest(sr.request, sr.signature[:-1] + bytes([sr.signature[-1] ^ 1]))
    assert evaluate(pol, bad, [], NOW).reason == "bad_signature"
    # signed by someone else's key
    other = SignedRequest(sr.request, P.sign_message(keys["approver"], sr.request.message()))
    assert evaluate(pol, other, [], NOW).reason == "bad_signature"
    ghost = make_request(keys["initiator"], cluster_id="test", policy_hash=pol.hash,
                         initiator="ghost", now=NOW, ttl_s=60, key_id="k", digest=DIGEST)
    assert evaluate(pol, ghost, [], NOW).reason == "unknown_user"
    a = appr(keys, sr)
    assert evaluate(pol, sr, [replace(a, approver="ghost")], NOW).reason == "unknown_user"
    assert evaluate(pol, sr, [replace(a, signed_at=NOW + 1)], NOW).reason == "bad_signature"
    stale = make_request(keys["initiator"], cluster_id="test", policy_hash="33" * 32,
                         initiator="initiator", now=NOW, ttl_s=60, key_id="k", digest=DIGEST)
    assert evaluate(pol, stale, [], NOW).reason == "policy_mismatch"


def test_reason_codes_are_documented():
    import inspect
    import pkgutil

    src = "".join(inspect.getsource(importlib.import_module(f"appliance.policy.{m.name}"))
                  for m in pkgutil.iter_modules(P.__path__))
    used = set(__import__("re").findall(r'\b(?:deny|PolicyDenied)\(\s*"([a-z_]+)"', src))
    assert {"self_approval", "stale_policy", "request_mismatch"} <= used <= set(P.REASONS)


def test_key_changes_need_admin_quorum(keys, pol):
    sr = req(pol, keys, who="admin", action="keygen", key_id=None,
             params={"threshold": 2, "nodes": ["n1", "n2", "n3"]})
    d = evaluate(pol, sr, [], NOW)
    assert d.pending and d.approvers == ("admin",)  # the requesting admin counts
    assert evaluate(pol, sr, [appr(keys, sr, who="approver")], NOW).reason == "missing_role"
    assert evaluate(pol, sr, [appr(keys, sr, who="admin")], NOW).reason == "self_approval"
    assert evaluate(pol, sr, [appr(keys, sr, who="admin2")], NOW).allowed
    assert evaluate(pol, req(pol, keys, action="refresh", params={}), [], NOW).reason == "missing_role"
    # the params are signed: another threshold is another request
    other = req(pol, keys, who="admin", action="keygen", key_id=None,
                params={"threshold": 3, "nodes": ["n1", "n2", "n3"]})
    assert evaluate(pol, sr, [appr(keys, other, who="admin2")], NOW).reason == \
        "approval_for_other_request"


def test_job_binding(keys, pol):
    r = req(pol, keys, derivation_path="m/0/1").request
    assert P.check_job_binding(r, action="sign", key_id="key_1", digest=DIGEST,
                               derivation_path="m/0h/1".replace("h", "")) is None
    for kw in ({"digest": b"\x00" * 32}, {"key_id": "key_2"}, {"derivation_path": "m/0/2"},
               {"action": "refresh"}):
        args = {"action": "sign", "key_id": "key_1", "digest": DIGEST, "derivation_path": "m/0/1",
                **kw}
        assert P.check_job_binding(r, **args).reason == "request_mismatch"


# --------------------------------------------------------------------------- updates


def _new_policy(keys, pol, version=4):
    return Policy.from_toml(policy_toml(keys).replace("version = 3", f"version = {version}")
                            .replace("max_signatures = 5", "max_signatures = 50"))


def test_policy_change_quorum(keys, pol):
    new = _new_policy(keys, pol)
    upd = PolicyUpdate(new, pol.hash)
    one = upd.signed_by("admin", keys["admin"])
    with pytest.raises(PolicyDenied) as e:
        P.verify_policy_update(pol, one)
    assert e.value.code == "missing_quorum"
    two = one.signed_by("admin2", keys["admin2"])
    assert P.verify_policy_update(pol, two).hash == new.hash
    # over the wire
    again = PolicyUpdate.from_json(json.dumps(two.to_json()))
    assert P.verify_policy_update(pol, again) == new


@pytest.mark.parametrize("case, code", [
    ("dup", "duplicate_approver"), ("non_admin", "missing_role"), ("bad_sig", "bad_signature"),
    ("unknown", "unknown_user"), ("stale", "stale_policy"), ("wrong_prev", "policy_mismatch"),
    ("other_cluster", "wrong_cluster"),
])
def test_policy_change_refused(keys, pol, case, code):
    new = _new_policy(keys, pol, version=3 if case == "stale" else 4)
    if case == "other_cluster":
        new = Policy.from_toml(policy_toml(keys).replace('"test"', '"other"').replace(
            "version = 3", "version = 4"))
    upd = PolicyUpdate(new, "44" * 32 if case == "wrong_prev" else pol.hash)
    upd = upd.signed_by("admin", keys["admin"])
    if case == "dup":
        upd = upd.signed_by("admin", keys["admin"])
    elif case == "non_admin":
        upd = upd.signed_by("approver", keys["approver"])
    elif case == "bad_sig":
        upd = upd.signed_by("admin2", keys["admin3"])
    elif case == "unknown":
        upd = replace(upd, signatures=upd.signatures + (("ghost", b"\x00" * 64),))
    else:
        upd = upd.signed_by("admin2", keys["admin2"])
    with pytest.raises(PolicyDenied) as e:
        P.verify_policy_update(pol, upd)
    assert e.value.code == code


def test_update_signatures_do_not_carry_over(keys, pol):
    """Signatures on an update to version 4 cannot install a different version-4 policy."""
    upd = PolicyUpdate(_new_policy(keys, pol), pol.hash).signed_by("admin", keys["admin"]) \
        .signed_by("admin2", keys["admin2"])
    evil = Policy.from_toml(policy_toml(keys).replace("version = 3", "version = 4")
                            .replace("max_signatures = 5", "max_signatures = 5000"))
    with pytest.raises(PolicyDenied) as e:
        P.verify_policy_update(pol, replace(upd, policy=evil))
    assert e.value.code == "bad_signature"


def test_default_policy(keys):
    pems = {r: _pem(keys[r]) for r in P.DEFAULT_ROLES}
    pol = P.default_policy("demo", pems)
    assert Policy.from_toml(pol.to_toml()) == pol
    sr = make_request(keys["initiator"], cluster_id="demo", policy_hash=pol.hash,
                      initiator="initiator", now=NOW, ttl_s=60, key_id="k", digest=DIGEST,
                      derivation_path="m/7/8")
    assert evaluate(pol, sr, [], NOW).pending
    ok = make_approval(keys["approver"], sr.request, approver="approver", now=NOW, ttl_s=60)
    assert evaluate(pol, sr, [ok], NOW).allowed
    for who in ("admin", "auditor"):
        a = make_approval(keys[who], sr.request, approver=who, now=NOW, ttl_s=60)
        assert evaluate(pol, sr, [a], NOW).reason == "missing_role"
    kg = make_request(keys["admin"], cluster_id="demo", policy_hash=pol.hash, initiator="admin",
                      now=NOW, ttl_s=60, action="keygen", params={"threshold": 2})
    assert evaluate(pol, kg, [], NOW).allowed
    upd = PolicyUpdate(replace(pol, version=2), pol.hash).signed_by("admin", keys["admin"])
    assert P.verify_policy_update(pol, upd).version == 2


def test_evaluator_never_allows_without_a_valid_approval(keys, pol):
    """Every subset of a pool of approvals with one unsound member is not allowed."""
    sr = req(pol, keys)
    other = req(pol, keys, digest=b"\x09" * 32)
    pool = [appr(keys, sr, "auditor"), appr(keys, other), appr(keys, sr, "admin"),
            replace(appr(keys, sr), signature=b"\x01" * 64), appr(keys, sr, "initiator")]
    for n in range(len(pool) + 1):
        for subset in itertools.permutations(pool, min(n, 2)):
            assert not evaluate(pol, sr, list(subset), NOW).allowed


def test_cluster_toml_users_are_the_default_policy(keys):
    """A cluster.toml ([cluster], [[nodes]], [[users]]) reads as the default policy, except
    that raw digests and text messages (``message``, ``eip191``) are off (production default)
    and on in LocalCluster's default."""
    pems = {r: _pem(keys[r]) for r in P.DEFAULT_ROLES}
    cluster = {"cluster": {"id": "local"},
               "nodes": [{"id": "node-1", "index": 0, "url": "https://127.0.0.1:1"}],
               "users": [{"id": r, "roles": [r], "public_key": pem} for r, pem in pems.items()]}
    prod, local = Policy.from_mapping(cluster), P.default_policy("local", pems)
    assert not prod.signing.allow_raw_digest and local.signing.allow_raw_digest
    assert prod.signing.payload_types == ("eip712", "eth_tx", "psbt", "sol_tx")
    assert local.signing.payload_types == ("eip191", "eip712", "eth_tx", "message", "psbt", "sol_tx")
    assert replace(prod, signing=replace(prod.signing, allow_raw_digest=True,
                                         payload_types=local.signing.payload_types)) == local
    cluster["signing"] = {"allow_raw_digest": True, "payload_types": list(P.PAYLOAD_TYPES)}
    assert Policy.from_mapping(cluster) == local


def test_transaction_rules_in_the_policy(keys):
    """[signing.transactions] and per-key tables: merged field by field, amounts beyond 2**53
    kept exactly, part of the hash; unknown fields and the signing rule's own ones refused."""
    text = policy_toml(keys, signing="""
[signing.transactions]
network = "regtest"
allowed_chain_ids = [1, 11155111]
max_fee = { ETH = "20000000000000000" }
limits = { ETH = { per_transaction = "1000000000000000000" } }
""") + """
[signing.keys."key_btc".transactions]
allowed_destinations = ["bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"]
limits = { BTC = { per_transaction = 100000, per_window = 150000 } }
"""
    pol = Policy.from_toml(text)
    d, k = pol.tx_rules_for("key_other"), pol.tx_rules_for("key_btc")
    assert d.allowed_chain_ids == {1, 11155111} and d.max_fee["ETH"] == 2 * 10**16
    assert d.limits["ETH"].per_transaction == 10**18 and d.allow_raw_digest
    assert k.allowed_chain_ids == d.allowed_chain_ids and k.limits["BTC"].per_window == 150000
    assert "ETH" not in k.limits  # a per-key table replaces the field it names
    assert pol.rule_for("key_btc").network == "regtest"
    assert Policy.from_toml(pol.to_toml()).hash == pol.hash
    assert Policy.from_json(json.dumps(pol.canonical())) == pol
    assert Policy.from_toml(text.replace("11155111", "5")).hash != pol.hash
    assert not pol.tx_rules_for("key_strict").allow_raw_digest
    for bad in ("bogus = 1", "allow_raw_digest = true", 'network = "moon"',
                'allowed_chain_ids = ["x"]'):
        with pytest.raises(P.PolicyError):
            Policy.from_toml(text + f'\n[signing.keys."key_x".transactions]\n{bad}\n')


def test_apply_updates_chain(keys, pol):
    u1 = PolicyUpdate(_new_policy(keys, pol, 4), pol.hash).signed_by("admin", keys["admin"]) \
        .signed_by("admin3", keys["admin3"])
    p4 = u1.policy
    u2 = PolicyUpdate(_new_policy(keys, pol, 5), p4.hash).signed_by("admin2", keys["admin2"]) \
        .signed_by("admin3", keys["admin3"])
    assert P.apply_updates(pol, [u1.to_json(), json.dumps(u2.to_json())]).version == 5
    with pytest.raises(PolicyDenied):
        P.apply_updates(pol, [u2])  # out of order


def test_authorize_for_signer_nodes(keys, pol):
    sr = req(pol, keys, derivation_path="m/0/3")
    a = appr(keys, sr)
    job = {"action": "sign", "key_id": "key_1", "digest": DIGEST, "derivation_path": "m/0/3"}
    wire_req, wire_a = json.dumps(sr.to_json()), [json.dumps(a.to_json())]
    assert P.authorize(pol, wire_req, wire_a, now=NOW, policy_hash=pol.hash, **job).allowed
    assert P.authorize(pol, wire_req, wire_a, now=NOW, policy_hash="00" * 32,
                       **job).reason == "policy_mismatch"
    assert P.authorize(pol, wire_req, wire_a, now=NOW,
                       **{**job, "digest": b"\x05" * 32}).reason == "request_mismatch"
    assert P.authorize(pol, wire_req, ["{"], now=NOW, **job).reason == "bad_request"
    assert P.authorize(pol, wire_req, [], now=NOW, **job).reason == "pending_approval"


def test_payload_hash_conventions():
    import base64
    import hashlib as h

    raw = b"psbt\xff\x01\x02"
    assert P.payload_hash("psbt", base64.b64encode(raw).decode()) == h.sha256(raw).hexdigest()
    assert P.payload_hash("psbt", raw) == h.sha256(raw).hexdigest()
    assert P.payload_hash("eth_tx", "0x02f8") == P.payload_hash("eth_tx", "02f8") == \
        h.sha256(bytes.fromhex("02f8")).hexdigest()
    typed = {"types": {}, "primaryType": "Mail", "message": {"b": 1, "a": "x"}}
    assert P.payload_hash("eip712", typed) == P.payload_hash("eip712", dict(reversed(typed.items())))
    assert P.payload_hash("eip712", {"v": 2**60}) != P.payload_hash("eip712", {"v": 2**60 + 1})
    for bad in (("psbt", "not base64!"), ("eth_tx", "zz"), ("bogus", b""), ("psbt", 5)):
        with pytest.raises(PolicyError):
            P.payload_hash(*bad)


def test_a_keygen_request_signs_its_scheme_and_only_a_known_one(keys, pol):
    """issue 16: keygen params carry ``scheme`` (absent: ecdsa-secp256k1); an unknown scheme,
    or a scheme on a reshare, is refused by the grammar with its message."""
    for scheme in ("ecdsa-secp256k1", "schnorr-bip340", "ed25519"):
        kg = make_request(keys["admin"], cluster_id=pol.cluster_id, policy_hash=pol.hash, initiator="admin", now=NOW,
                          ttl_s=60, action="keygen", params={"threshold": 2, "scheme": scheme})
        assert kg.request.params["scheme"] == scheme and not evaluate(pol, kg, [], NOW).denied
    with pytest.raises(PolicyError) as ei:
        make_request(keys["admin"], cluster_id=pol.cluster_id, policy_hash=pol.hash, initiator="admin", now=NOW,
                     ttl_s=60, action="keygen", params={"threshold": 2, "scheme": "schnorr"})
    assert str(ei.value) == "params.scheme must be one of ecdsa-secp256k1, schnorr-bip340, ed25519"
    with pytest.raises(PolicyError) as ei:
        make_request(keys["admin"], cluster_id=pol.cluster_id, policy_hash=pol.hash, initiator="admin", now=NOW,
                     ttl_s=60, action="reshare", key_id="k", params={"threshold": 2, "nodes": ["a", "b"],
                                                                      "scheme": "ed25519"})
    assert "scheme" in str(ei.value)


def test_an_import_request_names_a_frost_bundles_scheme(keys, pol):
    """issue 16 key import: import params carry ``scheme`` for a FROST key's v2 bundle (absent
    for ECDSA, so ``ecdsa-secp256k1`` is not named); an ed25519 key's public key is 32 bytes."""
    base = {"bundle_hash": "ab" * 32, "threshold": 2, "nodes": ["node-1", "node-2"]}

    def req(params):
        return make_request(keys["admin"], cluster_id=pol.cluster_id, policy_hash=pol.hash, initiator="admin",
                            now=NOW, ttl_s=60, action="import", params=params)

    assert req({**base, "public_key": "02" * 33, "scheme": "schnorr-bip340"}).request.params["scheme"] == "schnorr-bip340"
    assert req({**base, "public_key": "11" * 32, "scheme": "ed25519"}).request.params["scheme"] == "ed25519"
    for params, message in (
            ({**base, "public_key": "02" * 33, "scheme": "ecdsa-secp256k1"},
             "params.scheme of an import must be one of schnorr-bip340, ed25519 (absent for ecdsa-secp256k1)"),
            ({**base, "public_key": "11" * 32},
             "params.public_key must be a compressed public key in hex (an ed25519 key's 32 bytes)")):
        with pytest.raises(PolicyError) as ei:
            req(params)
        assert str(ei.value) == message


def test_auto_approval_rule_needs_no_person_and_keeps_its_rate(keys):
    """The rule that needs no human approval (issue 18): ``approvals = []`` signs at once,
    within ``max_signatures`` per ``window_s``; past the rate it is refused (rate_limited),
    never left pending for a person."""
    auto = '\n[signing.keys."key_auto"]\napprovals = []\nmax_signatures = 100\nwindow_s = 60\n'
    pol = Policy.from_toml(policy_toml(keys, extra=auto))
    sr = req(pol, keys, key_id="key_auto")
    d = evaluate(pol, sr, [], NOW, usage=99)
    assert d.allowed and d.reason is None and d.approvers == ()
    d = evaluate(pol, sr, [], NOW, usage=100)
    assert (d.outcome, d.reason, d.message) == ("denied", "rate_limited",
                                                "100 signatures in the last 60 s (limit 100)")
    # every other check still holds: a path outside the rule is refused, an approval is not needed
    assert evaluate(pol, req(pol, keys, key_id="key_auto", derivation_path="m/1"), [], NOW).reason == \
        "path_not_allowed"
    # the other keys keep their approval step
    assert evaluate(pol, req(pol, keys), [], NOW).reason == "pending_approval"
