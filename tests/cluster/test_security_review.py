"""Issue 12, findings 1 and 2, through real node processes: key import under the key-change
quorum, every job kind refused without its authorizing statement (a coordinator that omits or
forges it, with a stolen node's TLS key and HSM identity), and ids with path tricks refused at
the API edge instead of reaching node-only routes."""

from __future__ import annotations

import hashlib
import secrets
import time

import pytest
from yarl import URL

from api.auth import generate_user_key
from api.client import ApplianceAPIError
from appliance.config import ClusterConfig, load_toml
from appliance.job_authority import JOB_AUTHORITY
from appliance.key_import import build_bundle, parse_bundle_public, request_params
from appliance.policy import SignedRequest, load_private_key, make_approval, make_request
from appliance.request_use import use_digest
from appliance.tss.group import Q
from tests.cluster_fixtures import cluster_fixture, cluster_marks, digest_of
from tests.stolen_node import stolen_node

pytestmark = cluster_marks("security_review")

cluster = cluster_fixture(users={"admin2": ["admin"]}, policy={"key_changes": {"quorum": 2}})


def _job_id() -> str:
    return "job_" + secrets.token_hex(12)


async def _with_quorum(cluster, path, body: dict, **statement) -> dict:
    """A key change by ``admin``, approved by ``admin2`` (the policy's quorum of two)."""
    admin = cluster.client("admin")
    op = await admin._signed_post(path, body, **statement)
    assert op["status"] == "pending", op
    # its progress: approvals counted of those the key-change quorum needs (api/README.md, Progress)
    assert op["progress"] == {"phase": "waiting_for_approval", "done": 1, "total": 2,
                              "detail": "1 more of admin", "completed": []}, op
    await cluster.client("admin2").approve_operation(op["operation_id"])
    return await admin.wait_operation(op["operation_id"], 300)


async def _key(cluster) -> dict:
    if not hasattr(cluster, "_review_key"):
        op = await _with_quorum(cluster, "/v1/keys", {"threshold": 2}, action="keygen",
                                params={"threshold": 2})
        cluster._review_key = await cluster.client("admin").get_key(op["key_id"])
    return cluster._review_key


def _bundle(cluster, label: bytes) -> dict:
    cfg = ClusterConfig.from_mapping(load_toml(cluster.data_dirs[0] / "cluster.toml"))
    d = int.from_bytes(hashlib.sha256(label).digest(), "big") % Q
    return build_bundle(d, cfg, 2).to_json()


# ------------------------------------------------------------------ finding 1: key import


async def test_one_admin_cannot_import_a_key_alone(cluster):
    bundle = _bundle(cluster, b"issue 12: an admin's own private key")
    admin = cluster.client("admin")
    params = request_params(parse_bundle_public(bundle))
    op = await admin._signed_post("/v1/keys/import", {"bundle": bundle}, action="import", params=params)
    assert (op["status"], op["kind"]) == ("pending", "import"), op
    assert op["progress"] == {"phase": "waiting_for_approval", "done": 1, "total": 2,
                              "detail": "1 more of admin", "completed": []}, op
    for i in range(3):  # nothing on any node while the quorum is not met
        keys = await cluster.client("auditor", node=i).list_keys()
        assert bundle["public_key"] not in {k["public_key"] for k in keys}
    # the initiator cannot approve its own request; a second admin can
    with pytest.raises(ApplianceAPIError) as ei:
        await admin.approve_operation(op["operation_id"])
    assert (ei.value.status, ei.value.code) == (403, "self_approval")
    await cluster.client("admin2").approve_operation(op["operation_id"])
    done = await admin.wait_operation(op["operation_id"], 300)
    for i in range(3):
        k = await cluster.client("auditor", node=i).get_key(done["key_id"])
        assert k["public_key"] == bundle["public_key"]


async def test_an_import_request_for_another_bundle_is_refused(cluster):
    bundle = _bundle(cluster, b"issue 12: the bundle the admins approved")
    other = _bundle(cluster, b"issue 12: the bundle swapped in")
    params = request_params(parse_bundle_public(bundle))
    with pytest.raises(ApplianceAPIError) as ei:
        await cluster.client("admin")._signed_post("/v1/keys/import", {"bundle": other},
                                                   action="import", params=params)
    assert (ei.value.status, ei.value.code) == (400, "request_mismatch")


def _user_request(cluster, action: str, user: str = "admin", key=None, **fields):
    """A request statement signed by ``user``'s real key (key=...: another key, a forgery)."""
    pol = cluster._policy
    priv = load_private_key(key if key is not None else cluster.user_keys[user])
    return make_request(priv, cluster_id=pol["cluster_id"], policy_hash=pol["policy_hash"],
                        initiator=user, now=time.time(), ttl_s=3600, action=action, **fields)


async def _job_specs(cluster) -> dict[str, dict]:
    """One job description per kind, as node-1 (index 0) would coordinate it, with party 1."""
    key = await _key(cluster)
    cluster._policy = await cluster.client("admin").policy(refresh=True)
    ph = cluster._policy["policy_hash"]
    kid, epoch = key["key_id"], key["epoch"]
    bundle = _bundle(cluster, b"issue 12: a key the attacker knows")
    return {
        "presign": {"kind": "presign", "key_id": kid, "parties": [0, 1], "epoch": epoch},
        "frost_nonces": {"kind": "frost_nonces", "key_id": kid, "parties": [0, 1], "epoch": epoch,
                         "commitments": []},
        "sign": {"kind": "sign", "key_id": kid, "parties": [0, 1], "epoch": epoch,
                 "digest": digest_of("forged").hex(), "derivation_path": "m",
                 "items": [{"digest": digest_of("forged").hex(), "tweak": "0"}]},
        "keygen": {"kind": "keygen", "key_id": "key_" + secrets.token_hex(12), "parties": [0, 1, 2],
                   "threshold": 2, "paillier_bits": 2048},
        "aux_gen": {"kind": "aux_gen", "aux_id": "aux_" + secrets.token_hex(12), "parties": [0, 1, 2],
                    "paillier_bits": 2048},
        "import": {"kind": "import", "key_id": "key_" + secrets.token_hex(12), "parties": [0, 1, 2],
                   "threshold": 2, "paillier_bits": 2048, "bundle": bundle},
        "refresh": {"kind": "refresh", "key_id": kid, "parties": [0, 1, 2], "threshold": 2,
                    "paillier_bits": 2048, "epoch": epoch},
        "reshare": {"kind": "reshare", "key_id": kid, "parties": [0, 1, 2], "senders": [0, 1],
                    "new_members": [0, 1, 2], "threshold": 2, "old_threshold": 2, "old_info": "00",
                    "paillier_bits": 2048, "epoch": epoch},
    } | {kind: {"kind": kind, "key_id": kid, "parties": [0, 1, 2], "threshold": 2, "epoch": epoch}
         for kind in ("disable", "enable", "delete")} | {"_policy_hash": ph}


def _statement_for(cluster, kind: str, spec: dict, *, forged: bool):
    """The user statement a real job of ``kind`` carries; ``forged``: signed with a key that
    is not the initiator's."""
    other = generate_user_key()[0] if forged else None
    if kind == "sign":
        return _user_request(cluster, "sign", "initiator", other, key_id=spec["key_id"],
                             digest=spec["digest"], derivation_path="m")
    if kind == "import":
        params = request_params(parse_bundle_public(spec["bundle"]))
        return _user_request(cluster, "import", "admin", other, params=params)
    if kind == "keygen":
        return _user_request(cluster, "keygen", "admin", other, params={"threshold": 2})
    if kind in ("refresh", "disable", "enable", "delete"):
        return _user_request(cluster, kind, "admin", other, key_id=spec["key_id"], params={})
    return _user_request(cluster, "reshare", "admin", other, key_id=spec["key_id"],
                         params={"threshold": 2, "nodes": ["node-1", "node-2", "node-3"]})


async def test_every_job_kind_needs_an_authorizing_statement_checked_by_the_party(cluster):
    """A coordinator (node-1's stolen TLS key and HSM identity) that omits or forges the
    statement of any job kind is refused by the party, naming the check; nothing is created."""
    specs = await _job_specs(cluster)
    ph = specs.pop("_policy_hash")
    assert set(specs) == set(JOB_AUTHORITY)  # every kind there is, no more
    before = {k["key_id"] for k in await cluster.client("auditor", node=1).list_keys()}
    async with stolen_node(cluster, 0) as thief:
        for kind, base in specs.items():
            spec = {**base, "job_id": _job_id(), "coordinator": 0, "policy_hash": ph}
            # the TLS key alone: no coordinator signature, or a signature that does not cover
            # the job sent (the job altered after signing)
            status, body = await thief.post(1, "/v1/peer/jobs", dict(spec))
            assert (status, body["error"]["code"]) == (403, "bad_coordinator_signature"), (kind, body)
            altered = thief.sign_job(spec)
            altered["parties"] = [0, 1, 2] if kind in ("presign", "sign", "frost_nonces") else [0, 1]
            status, body = await thief.post(1, "/v1/peer/jobs", altered)
            assert (status, body["error"]["code"]) == (403, "bad_coordinator_signature"), (kind, body)
            if JOB_AUTHORITY[kind] != "user_request":
                continue
            # the identity key too: the user's statement omitted, then forged
            spec["job_id"] = _job_id()
            status, body = await thief.post(1, "/v1/peer/jobs", thief.sign_job(spec))
            assert (status, body["error"]["code"]) == (403, "bad_request"), (kind, body)
            sr = _statement_for(cluster, kind, spec, forged=True)
            spec = {**spec, "job_id": _job_id(), "request": sr.to_json(), "request_id": sr.request_id,
                    "approvals": []}
            status, body = await thief.post(1, "/v1/peer/jobs", thief.sign_job(spec))
            assert (status, body["error"]["code"]) == (403, "bad_signature"), (kind, body)
            # a genuine statement without the approvals the policy asks for
            sr = _statement_for(cluster, kind, spec, forged=False)
            spec = {**spec, "job_id": _job_id(), "request": sr.to_json(), "request_id": sr.request_id}
            status, body = await thief.post(1, "/v1/peer/jobs", thief.sign_job(spec))
            assert (status, body["error"]["code"]) == (403, "pending_approval"), (kind, body)
    after = {k["key_id"] for k in await cluster.client("auditor", node=1).list_keys()}
    assert after == before


async def test_a_keygen_naming_an_aux_info_the_party_does_not_hold_is_refused(cluster):
    """A coordinator (stolen identity) with a genuine, approved keygen request names a pooled
    aux-info node-2 does not hold: node-2 refuses the job (409 aux_unknown, naming itself) after
    the policy's checks, and nothing is created (issue 18: every party checks the aux id)."""
    specs = await _job_specs(cluster)
    ph = specs.pop("_policy_hash")
    sr = _statement_for(cluster, "keygen", specs["keygen"], forged=False)
    a2 = make_approval(load_private_key(cluster.user_keys["admin2"]), sr.request, approver="admin2",
                       now=time.time(), ttl_s=3600)
    aux_id = "aux_" + secrets.token_hex(12)
    before = {k["key_id"] for k in await cluster.client("auditor", node=1).list_keys()}
    async with stolen_node(cluster, 0) as thief:
        spec = {**specs["keygen"], "job_id": _job_id(), "coordinator": 0, "policy_hash": ph, "aux_id": aux_id,
                "request": sr.to_json(), "request_id": sr.request_id, "approvals": [a2.to_json()]}
        status, body = await thief.post(1, "/v1/peer/jobs", thief.sign_job(spec))
        assert (status, body["error"]["code"], body["error"]["message"]) == (
            409, "aux_unknown", f"node-2: holds no aux-info {aux_id}"), body
        spec = {**spec, "job_id": _job_id(), "aux_id": "aux_../keys"}  # a malformed id: refused at the edge
        status, body = await thief.post(1, "/v1/peer/jobs", thief.sign_job(spec))
        assert (status, body["error"]["code"]) == (400, "bad_job"), body
    assert {k["key_id"] for k in await cluster.client("auditor", node=1).list_keys()} == before


async def test_a_coordinator_signed_job_may_not_carry_a_bundle_other_than_the_approved_one(cluster):
    """A stolen identity replays a genuine, approved import request with its own bundle."""
    specs = await _job_specs(cluster)
    ph = specs.pop("_policy_hash")
    approved = _bundle(cluster, b"issue 12: the bundle two admins approved")
    sr = _statement_for(cluster, "import", {"bundle": approved}, forged=False)
    a2 = make_approval(load_private_key(cluster.user_keys["admin2"]), sr.request, approver="admin2",
                       now=time.time(), ttl_s=3600)
    async with stolen_node(cluster, 0) as thief:
        spec = {**specs["import"], "job_id": _job_id(), "coordinator": 0, "policy_hash": ph,
                "request": sr.to_json(), "request_id": sr.request_id, "approvals": [a2.to_json()]}
        status, body = await thief.post(1, "/v1/peer/jobs", thief.sign_job(spec))
        assert (status, body["error"]["code"]) == (403, "request_mismatch"), body
        assert "bundle" in body["error"]["message"]


# ------------------------------------------------------------------ finding 2: ids in URLs

TRICKS = ["req_%2F..%2F..%2Fhealth", "req_%2F..%2F..%2Fhealth%3F", "req_..%2F..%2Fpolicy",
          "req_" + "0" * 32 + "%3Fwait=1", "req_%252F..%252Fhealth", "REQ_" + "0" * 32]


async def test_a_request_id_with_path_tricks_never_reaches_a_peer_route(cluster):
    """The auditor (read-only) once read a peer's node-only routes and cancelled a running
    keygen through a request id pasted into a forwarded URL. Every such id is a 400 bad_id
    now, on reads and on decisions."""
    auditor = cluster.client("auditor", node=2)
    for trick in TRICKS:
        with pytest.raises(ApplianceAPIError) as ei:
            await auditor.request("GET", URL(f"/v1/sign-requests/{trick}", encoded=True))
        assert (ei.value.status, ei.value.code) == (400, "bad_id"), (trick, ei.value)
        with pytest.raises(ApplianceAPIError) as ei:
            await auditor.request("POST", URL(f"/v1/sign-requests/{trick}/approvals", encoded=True), {})
        assert (ei.value.status, ei.value.code) == (400, "bad_id"), (trick, ei.value)
    traversal = "req_%2F..%2F..%2Fjobs%2Fjob_" + "0" * 24 + "%2Fcancel%3F"
    with pytest.raises(ApplianceAPIError) as ei:
        await auditor.request("POST", URL(f"/v1/sign-requests/{traversal}/rejections", encoded=True), {})
    assert (ei.value.status, ei.value.code) == (400, "bad_id")
    for path in ("/v1/keys/key_%2F..%2Fx", "/v1/operations/op_..%2F..", "/v1/keys/key_%3F/derive"):
        with pytest.raises(ApplianceAPIError) as ei:
            await auditor.request("GET", URL(path, encoded=True))
        assert (ei.value.status, ei.value.code) == (400, "bad_id"), path


# ------------------------------------------------------------------ finding 7: single use


async def test_a_signed_request_is_not_signed_again_with_another_signer(cluster):
    """Signed by node-1 and node-2; a coordinator with node-1's stolen identity then asks
    node-3 (which did not sign) for a second signature of the same request: refused, however
    the coordinator presents it."""
    key = await _key(cluster)
    ini, app = cluster.client("initiator"), cluster.client("approver")
    req = await ini.request_signature(key["key_id"], digest_of("issue 12: sign once"),
                                      signers=["node-1", "node-2"])
    await app.approve(req["request_id"])
    await ini.wait_signature(req["request_id"], 120)
    seen = await ini.get_sign_request(req["request_id"])
    sr_json = seen["request"]
    ph = (await cluster.client("admin").policy(refresh=True))["policy_hash"]
    sr = SignedRequest.from_json(sr_json)
    approvals = [make_approval(load_private_key(cluster.user_keys["approver"]), sr.request,
                               approver="approver", now=time.time(), ttl_s=3600,
                               decoded=seen.get("decoded"), network=seen.get("network")).to_json()]
    digest = sr.request.digest
    base = {"kind": "sign", "key_id": key["key_id"], "parties": [0, 2], "epoch": key["epoch"],
            "coordinator": 0, "policy_hash": ph, "request": sr_json, "request_id": sr.request_id,
            "approvals": approvals, "digest": digest, "derivation_path": "m",
            "items": [{"digest": digest, "tweak": "0"}]}
    async with stolen_node(cluster, 0) as thief:
        # node-3 recorded the first signer set when the request was reserved
        status, body = await thief.post(2, f"/v1/peer/sign-requests/{sr.request_id}/use",
                                        {"request": sr_json, "key_id": key["key_id"], "signers": [0, 2]})
        assert (status, body["error"]["code"]) == (409, "request_already_signed"), body
        own = thief.hsm.sign_digest(use_digest(sr.request_id, key["key_id"], [0, 2])).hex()
        forged = thief.hsm.sign_digest(b"\x01" * 32).hex()
        for marks in ({}, {"node-1": own}, {"node-1": own, "node-3": forged},
                      {"node-1": own, "node-2": own}):
            spec = {**base, "job_id": _job_id(), "use_marks": marks}
            status, body = await thief.post(2, "/v1/peer/jobs", thief.sign_job(spec))
            assert (status, body["error"]["code"]) == (403, "use_not_confirmed"), (marks, body)
    # the request's one signature stands; node-3 took part in nothing
    assert (await ini.get_sign_request(req["request_id"]))["status"] == "signed"
