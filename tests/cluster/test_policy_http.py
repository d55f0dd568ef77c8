"""Separation of duties, the audit log and metrics over HTTP, on a real 2-of-3 cluster.

LocalCluster's default policy (signing: the initiator and one approver; key changes: one
admin) with a second approver and a second admin, and a policy-change quorum of two admins.
node-1 runs with the test-only coordinator faults (FaultPlan.coordinator_faults): a request
whose nonce is ``testfault.<fault>.<random>`` makes it send its signers a forged or replayed
approval, none at all, or another digest; the honest signers must refuse and audit it.

Covered: the policy matrix (each refusal a 403 with its reason code, or the documented
status, and each in the audit log), forged/replayed/missing approvals and a substituted
digest refused by every honest signer, policy changes (too few admins refused; the quorum's
change in force on every node, pending requests invalidated, its rules enforced), the audit
export verified and tampering named, an unwritable audit store refusing to sign, no secret
of the run in any audit log, /metrics (promtool, moving after a signature), and passkey
(WebAuthn) approvals enrolled by the admin quorum and verified by every signer (issue 17)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import time

import aiohttp
import pytest

from api.client import ApplianceAPIError
from appliance import audit as A
from appliance.audit import command as AV
from appliance.policy import Approval, make_request
from tests.stolen_node import stolen_node
from tests.cluster_fixtures import check_signature, cluster_fixture, cluster_marks, digest_of, signed_policy_update
from tests.cluster.test_metrics import promtool_path
from tests.webauthn_soft import FLAG_UP, SoftPasskey

pytestmark = cluster_marks("policy-http")

N = 3
cluster = cluster_fixture(
    users={"approver2": ["approver"], "admin2": ["admin"]},
    policy={"policy_change": {"quorum": 2}},
    node_extra={i: {"audit": {"checkpoint_every": 10}} for i in range(3)},
    faults={0: {"coordinator_faults": True}}, test_hooks=True,
)
STATE: dict = {}


async def _key(cluster) -> dict:
    if "key" not in STATE:
        STATE["key"] = await cluster.client("admin").create_key(threshold=2)
    return STATE["key"]


async def _audit(cluster, node: int) -> list[dict]:
    return await cluster.client("auditor", node=node).audit()


async def _refused(coro, status: int, code: str) -> ApplianceAPIError:
    with pytest.raises(ApplianceAPIError) as ei:
        await coro
    assert (ei.value.status, ei.value.code) == (status, code), ei.value
    return ei.value


def _audited(entries: list[dict], *, subject: str | None = None, reason: str,
             decision: str | None = "denied", action: str | None = None) -> dict:
    for e in entries:
        if (subject is None or e["subject"] == subject) and e["reason"] == reason \
                and (decision is None or e["decision"] == decision) \
                and (action is None or e["action"] == action):
            return e
    raise AssertionError(f"no audit entry for {subject} with reason {reason}: "
                         f"{[(e['action'], e['subject'], e['decision'], e['reason']) for e in entries[-15:]]}")


def _metric(text: str, name: str, **labels) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name + ("{" if labels else " ")):
            lab = line[len(name):].split(" ")[0].strip("{}")
            if not labels or ",".join(sorted(lab.split(","))) == want:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


# ------------------------------------------------------------------------------ the flow


async def test_request_approve_sign(cluster):
    """The DESIGN flow: request_signature -> approve (by approver) -> wait_signature; the
    approver sees what the node decoded; every step is in the audit log."""
    key = await _key(cluster)
    ini, app = cluster.client("initiator"), cluster.client("approver")
    before = await cluster.client("auditor").metrics()
    digest = digest_of("policy flow")
    req = await ini.request_signature(key["key_id"], digest)
    assert req["status"] == "pending"
    shown = await app.get_sign_request(req["request_id"])
    assert shown["request"]["statement"]["initiator"] == "initiator"
    assert shown["decoded"]["summary"]["digest"] == digest.hex()
    assert req["request_id"] in [r["request_id"] for r in await app.pending_requests()]
    approved = await app.approve(req["request_id"])
    assert approved["decisions"][0]["approver"] == "approver"
    done = await ini.wait_signature(req["request_id"], timeout=60)
    check_signature(key["public_key"], digest, done["signature"])
    # idempotent: the same signed statement again is the same request
    again = await ini.request("POST", f"/v1/keys/{key['key_id']}/sign-requests",
                              {"digest": digest.hex(), "request": shown["request"]})
    assert again["request_id"] == req["request_id"] and again["status"] == "signed"
    entries = await _audit(cluster, 0)
    acts = [(e["action"], e["decision"]) for e in entries if e["subject"] == req["request_id"]]
    assert ("sign_request", "pending") in acts and ("approval", "accepted") in acts \
        and ("signed", "signed") in acts, acts
    for i in (1, 2):  # the signers audited their part
        if cluster.node_ids[i] in done["signers"]:
            assert any(e["action"] == "join_sign" and req["request_id"] in (e["reason"] or "")
                       for e in await _audit(cluster, i))
    # /metrics moves: one more signed request, audit entries written, a sign job done
    after = await cluster.client("auditor").metrics()
    assert _metric(after, "appliance_sign_requests_completed_total", outcome="signed") == \
        _metric(before, "appliance_sign_requests_completed_total", outcome="signed") + 1
    assert _metric(after, "appliance_audit_entries_total") > _metric(before, "appliance_audit_entries_total")
    assert _metric(after, "appliance_jobs_total", kind="sign", outcome="done") == \
        _metric(before, "appliance_jobs_total", kind="sign", outcome="done") + 1


async def test_approve_and_wait_on_other_nodes(cluster):
    """A request is kept by the node that received it; the others answer for it (reads,
    long-polls and decisions go to it over the peer link)."""
    key = await _key(cluster)
    req = await cluster.client("initiator", node=0).request_signature(key["key_id"], digest_of("elsewhere"))
    seen = await cluster.client("approver", node=2).get_sign_request(req["request_id"])
    assert seen["status"] == "pending" and seen["request"]["statement"]["initiator"] == "initiator"
    await _refused(cluster.client("initiator", node=1).approve(req["request_id"]), 403, "self_approval")
    await cluster.client("approver", node=2).approve(req["request_id"])
    done = await cluster.client("initiator", node=1).wait_signature(req["request_id"], timeout=60)
    check_signature(key["public_key"], digest_of("elsewhere"), done["signature"])
    await _refused(cluster.client("auditor", node=1).get_sign_request("req_" + "0" * 32), 404, "not_found")


async def test_policy_matrix(cluster):
    """Each way a request can fail the policy: refused with 403 and its reason code (or the
    documented status), and written to the audit log."""
    key = await _key(cluster)
    kid = key["key_id"]
    ini, app, app2 = cluster.client("initiator"), cluster.client("approver"), cluster.client("approver2")

    # no approval: stays pending (202 pending, reason pending_approval), listed
    a = await ini.request_signature(kid, digest_of("matrix: no approval"))
    await asyncio.sleep(0.5)
    assert (await ini.get_sign_request(a["request_id"]))["status"] == "pending"
    _audited(await _audit(cluster, 0), subject=a["request_id"], reason="pending_approval",
             decision="pending")
    # the initiator approving their own request
    await _refused(ini.approve(a["request_id"]), 403, "self_approval")
    # an approver without the role (the auditor)
    await _refused(cluster.client("auditor").approve(a["request_id"]), 403, "missing_role")
    # an approval made for another request, posted to this one
    b = await ini.request_signature(kid, digest_of("matrix: other request"))
    other = await app.get_sign_request(b["request_id"])
    wrong = (await app._decision(other["request"], "approve")).to_json()
    await _refused(app.request("POST", f"/v1/sign-requests/{a['request_id']}/approvals",
                               {"approval": wrong}), 403, "approval_for_other_request")
    # a decision signed for another user than the authenticated one
    await _refused(app2.request("POST", f"/v1/sign-requests/{b['request_id']}/approvals",
                                {"approval": wrong}), 403, "approver_mismatch")
    # the same approver twice (the first approval let the request go: the second is refused)
    await app.approve(a["request_id"])
    await _refused(app.approve(a["request_id"]), 403, "duplicate_approver")
    await ini.wait_signature(a["request_id"], timeout=60)
    entries = await _audit(cluster, 0)
    for reason in ("self_approval", "missing_role", "approval_for_other_request", "duplicate_approver"):
        _audited(entries, subject=a["request_id"], reason=reason)
    _audited(entries, reason="approver_mismatch")

    # an expired request: refused when made ...
    pol = await ini.policy()
    t = time.time() - 120
    stale = make_request(cluster.user_keys["initiator"], cluster_id=pol["cluster_id"],
                         policy_hash=pol["policy_hash"], initiator="initiator", now=t, ttl_s=60,
                         key_id=kid, digest=digest_of("matrix: expired"))
    await _refused(ini.request("POST", f"/v1/keys/{kid}/sign-requests",
                               {"digest": digest_of("matrix: expired").hex(), "request": stale.to_json()}),
                   403, "expired")
    _audited(await _audit(cluster, 0), subject=stale.request_id, reason="expired")
    # ... and when approved after its validity
    short = make_request(cluster.user_keys["initiator"], cluster_id=pol["cluster_id"],
                         policy_hash=pol["policy_hash"], initiator="initiator", now=time.time(),
                         ttl_s=5, key_id=kid, digest=digest_of("matrix: expires"))
    s = await ini.request("POST", f"/v1/keys/{kid}/sign-requests",
                          {"digest": digest_of("matrix: expires").hex(), "request": short.to_json()})
    assert s["status"] == "pending"
    cluster.set_clock_offset(short.request.expires_at - time.time() + 1.0)  # the nodes' clocks move on
    try:
        await _refused(app.approve(s["request_id"]), 403, "expired")
        assert (await ini.get_sign_request(s["request_id"]))["status"] == "expired"
        with pytest.raises(ApplianceAPIError) as ei:
            await ini.wait_signature(s["request_id"], timeout=5)
        assert ei.value.code == "expired"
    finally:
        cluster.set_clock_offset(0)

    # rejected: the request is closed (status rejected), a later approval does not revive it
    await app.reject(b["request_id"])
    assert (await ini.get_sign_request(b["request_id"]))["status"] == "rejected"
    await _refused(app2.approve(b["request_id"]), 409, "not_pending")
    with pytest.raises(ApplianceAPIError) as ei:
        await ini.wait_signature(b["request_id"], timeout=5)
    assert ei.value.code == "rejected"
    # cancelled by the initiator (only the initiator may: an approver's cancel is refused)
    c = await ini.request_signature(kid, digest_of("matrix: cancelled"))
    await _refused(app.cancel(c["request_id"]), 403, "not_initiator")
    await ini.cancel(c["request_id"])
    assert (await ini.get_sign_request(c["request_id"]))["status"] == "cancelled"
    await _refused(app.approve(c["request_id"]), 409, "not_pending")
    entries = await _audit(cluster, 0)
    _audited(entries, subject=b["request_id"], reason="rejected", decision="rejected")
    _audited(entries, subject=c["request_id"], reason="cancelled", decision="cancelled")
    _audited(entries, subject=c["request_id"], reason="not_initiator")
    _audited(entries, subject=s["request_id"], reason="expired")
    # a user who may not initiate, and a request signed for someone else
    await _refused(app.request_signature(kid, digest_of("matrix: approver initiates")), 403, "missing_role")
    forged = make_request(cluster.user_keys["initiator"], cluster_id=pol["cluster_id"],
                          policy_hash=pol["policy_hash"], initiator="initiator", now=time.time(),
                          ttl_s=60, key_id=kid, digest=digest_of("matrix: not mine"))
    await _refused(app.request("POST", f"/v1/keys/{kid}/sign-requests",
                               {"digest": digest_of("matrix: not mine").hex(), "request": forged.to_json()}),
                   403, "initiator_mismatch")
    m = await cluster.client("auditor").metrics()
    for reason in ("self_approval", "missing_role", "duplicate_approver", "expired"):
        assert _metric(m, "appliance_policy_denials_total", reason=reason) >= 1, reason


# ------------------------------------------------------------------------------ a lying coordinator


@pytest.mark.parametrize("fault, reason, status", [
    ("forge-approval", "bad_signature", 403),
    ("replay-approval", "approval_for_other_request", 403),
    ("skip-approval", "pending_approval", 403),
    ("substitute-digest", "request_mismatch", 403),
])
async def test_lying_coordinator_is_refused_by_every_honest_signer(cluster, fault, reason, status):
    """node-1 (patched) sends node-2 and node-3 a job with a forged approval, one replayed from
    another request, none, or another digest: both refuse, audit it, and nothing is signed."""
    key = await _key(cluster)
    ini, app = cluster.client("initiator", node=0), cluster.client("approver", node=0)
    before = [len(await _audit(cluster, i)) for i in (1, 2)]
    req = await ini.request_signature(key["key_id"], digest_of(f"lying coordinator {fault}"),
                                      signers=["node-2", "node-3"], nonce=f"testfault.{fault}.{time.time_ns()}")
    if req["status"] == "pending":
        await app.approve(req["request_id"])
    with pytest.raises(ApplianceAPIError) as ei:
        await ini.wait_signature(req["request_id"], timeout=60)
    assert ei.value.code == reason, ei.value
    for n, i in enumerate((1, 2)):
        entries = (await _audit(cluster, i))[before[n]:]
        e = _audited(entries, reason=reason, action="sign_job_refused")
        assert e["actor"] == "node-1" and e["key"] == key["key_id"]
        assert not [x for x in entries if x["action"] == "join_sign"]
        m = await cluster.client("auditor", node=i).metrics()
        assert _metric(m, "appliance_policy_denials_total", reason=reason) >= 1


async def test_replayed_job_id_is_refused(cluster):
    """A job id a node has seen once (hence its protocol session ids) is never run again, even
    long after: a coordinator replaying an old job (and its signed messages) is refused."""
    key = await _key(cluster)
    done = await cluster.client("initiator").sign(key["key_id"], digest_of("job id replay"),
                                                  signers=["node-1", "node-2"],
                                                  approver=cluster.client("approver"))
    entries = await _audit(cluster, 1)
    job_id = next(e["subject"] for e in entries if e["action"] == "join_sign"
                  and done["request_id"] in (e["reason"] or ""))
    await cluster.stop_node(1)  # what a node remembers in memory is gone; the durable record stays
    await cluster.start_node(1)
    spec = {"job_id": job_id, "kind": "presign", "key_id": key["key_id"], "parties": [0, 1],
            "epoch": key["epoch"], "coordinator": 0, "policy_hash": (await cluster.client("admin").policy())["policy_hash"]}
    async with stolen_node(cluster, 0) as coordinator:  # even signed by the coordinator's identity
        status, body = await coordinator.post(1, "/v1/peer/jobs", coordinator.sign_job(spec))
    assert status == 409 and body["error"]["code"] == "job_exists", body


# ------------------------------------------------------------------------------ policy changes




async def test_policy_change_needs_the_admin_quorum_and_holds_on_every_node(cluster):
    kid = (await cluster.client("admin").create_key(threshold=2))["key_id"]  # this rule's own key
    pending_kid = (await _key(cluster))["key_id"]
    admin = cluster.client("admin")
    hashes = {(await cluster.client("auditor", node=i).policy(refresh=True))["policy_hash"] for i in range(N)}
    assert len(hashes) == 1
    pending = await cluster.client("initiator").request_signature(pending_kid,
                                                                  digest_of("pending across a change"))

    def rule(m):
        m["signing"]["keys"][kid] = {"approvals": [{"roles": ["approver"], "count": 2}],
                                     "max_signatures": 1, "window_s": 3600,
                                     "derivation_paths": ["m", "m/0/*"]}

    one = await signed_policy_update(cluster, ["admin"], rule)
    await _refused(admin.update_policy(one), 403, "missing_quorum")
    bad = await signed_policy_update(cluster, ["admin", "approver"], rule)
    await _refused(admin.update_policy(bad), 403, "missing_role")
    for i in range(N):
        assert (await cluster.client("auditor", node=i).policy(refresh=True))["policy_hash"] in hashes
    _audited(await _audit(cluster, 0), reason="missing_quorum", action="policy_change")

    good = await signed_policy_update(cluster, ["admin", "admin2"], rule)
    out = await admin.update_policy(good)
    assert out["applied"] and set(out["nodes"].values()) == {"applied"}, out
    for i in range(N):
        p = await cluster.client("auditor", node=i).policy(refresh=True)
        assert p["policy_hash"] == out["policy_hash"] and p["version"] == out["version"]
        assert any(e["action"] == "policy_change" and e["decision"] == "applied"
                   and e["digest"] == out["policy_hash"] for e in await _audit(cluster, i))
    # a policy change invalidates what was pending under the old one
    p = await cluster.client("initiator").get_sign_request(pending["request_id"])
    assert p["status"] == "expired" and p["error"]["code"] == "policy_changed"

    # the new rule, enforced: two distinct approvers, one signature per hour, paths m and m/0/*
    ini, app, app2 = cluster.client("initiator"), cluster.client("approver"), cluster.client("approver2")
    await _refused(ini.request_signature(kid, digest_of("path"), derivation_path="m/1/2"), 403,
                   "path_not_allowed")
    req = await ini.request_signature(kid, digest_of("two approvers"), derivation_path="m/0/7")
    assert (await app.approve(req["request_id"]))["status"] == "pending"
    await _refused(app.approve(req["request_id"]), 403, "duplicate_approver")
    assert (await app2.approve(req["request_id"]))["status"] in ("signing", "signed")
    done = await ini.wait_signature(req["request_id"], timeout=60)
    child = await ini.derive(kid, "m/0/7")
    check_signature(child["public_key"], digest_of("two approvers"), done["signature"])
    assert done["public_key"] == child["public_key"]
    await _refused(ini.request_signature(kid, digest_of("over the limit")), 403, "rate_limited")
    entries = await _audit(cluster, 0)
    for reason in ("path_not_allowed", "duplicate_approver", "rate_limited"):
        _audited(entries, reason=reason)
    # a node that missed the change would refuse every job: none does (same hash everywhere)
    assert len({(await cluster.client("auditor", node=i).policy())["policy_hash"] for i in range(N)}) == 1


# ------------------------------------------------------------------------------ the audit log


async def test_audit_export_verifies_and_tampering_is_named(cluster):
    await _key(cluster)
    keys = A.node_keys_from_cluster(cluster.data_dirs[0] / "cluster.toml")
    auditor = cluster.client("auditor", node=0)
    deadline = time.monotonic() + 20
    while True:  # checkpoints are co-signed by the peers in the background
        export = await auditor.audit_export()
        rep = A.verify_export(export.splitlines(), keys, node_id="node-1", min_cosignatures=2)
        if rep.ok or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    assert rep.ok and rep.checkpoints >= 1 and rep.cosignatures >= 2, rep.summary()
    lines = export.splitlines()
    entry_at = [i for i, ln in enumerate(lines) if ln.startswith(b'{"entry"')]
    cp_at = [i for i, ln in enumerate(lines) if ln.startswith(b'{"checkpoint"')]
    # an entry in the middle that the next line (an entry, not a checkpoint) follows
    mid = next(i for i in entry_at[len(entry_at) // 2:] if i + 1 in entry_at)
    seq = json.loads(lines[mid])["entry"]["seq"]

    def verify(ls):
        return A.verify_export(ls, keys, node_id="node-1")

    edited = list(lines)
    edited[mid] = edited[mid].replace(b'"node-1"', b'"node-2"', 1)
    deleted = lines[:mid] + lines[mid + 1:]
    reordered = list(lines)
    reordered[mid], reordered[mid + 1] = reordered[mid + 1], reordered[mid]
    for name, ls in (("edited", edited), ("deleted", deleted), ("reordered", reordered)):
        rep = verify(ls)
        assert not rep.ok and rep.bad_seq == seq, (name, rep.summary())
    forged = list(lines)
    cp = json.loads(forged[cp_at[0]])
    cp["checkpoint"]["head"] = "ab" * 32
    forged[cp_at[0]] = json.dumps(cp, separators=(",", ":"), sort_keys=True).encode()
    rep = verify(forged)
    assert not rep.ok and rep.bad_seq is not None, rep.summary()
    # what `appliance audit verify FILE` prints and returns (here without the peers'
    # checkpoints: tests/cluster/test_audit_tail_cluster.py checks a cut tail against them)
    import io

    out = io.StringIO()
    code = AV.verify_command(_write(edited), cluster=cluster.data_dirs[0] / "cluster.toml",
                             require_checkpoint=False, out=out, err=io.StringIO())
    assert code == 7 and "FAIL" in out.getvalue() and str(seq) in out.getvalue(), out.getvalue()
    out = io.StringIO()
    assert AV.verify_command(_write(lines), cluster=cluster.data_dirs[0] / "cluster.toml",
                             node_id="node-1", require_checkpoint=False, out=out,
                             err=io.StringIO()) == 0, out.getvalue()


def _write(lines: list[bytes]) -> str:
    import tempfile

    f = tempfile.NamedTemporaryFile("wb", suffix=".jsonl", delete=False)
    f.write(b"\n".join(lines) + b"\n")
    f.close()
    return f.name


async def test_unwritable_audit_store_refuses_signing(cluster):
    """node-3's audit store refuses writes: it answers, is not ready, and neither creates a
    request nor joins a job (fail closed); the other nodes go on."""
    key = await _key(cluster)
    await cluster.stop_node(2)
    cluster.configure_faults(2, audit_read_only=True)
    try:
        await cluster.start_node(2, wait="health")
        import aiohttp

        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=cluster._server_ctx(2))) as s:
            async with s.get(cluster.urls[2] + "/readyz") as r:
                ready = (r.status, await r.json())
        assert ready[0] == 503 and ready[1]["audit"] is False
        ini3 = cluster.client("initiator", node=2)
        before = await ini3.pending_requests()
        await _refused(ini3.request_signature(key["key_id"], digest_of("no audit here")), 503,
                       "audit_unavailable")
        assert await ini3.pending_requests() == before
        # as a signer: node-1 coordinates, node-3 refuses to join
        ini = cluster.client("initiator", node=0)
        req = await ini.request_signature(key["key_id"], digest_of("no audit signer"),
                                          signers=["node-1", "node-3"])
        await cluster.client("approver", node=0).approve(req["request_id"])
        with pytest.raises(ApplianceAPIError) as ei:
            await ini.wait_signature(req["request_id"], timeout=60)
        assert ei.value.code == "audit_unavailable", ei.value
        m = await cluster.client("auditor", node=2).metrics()
        assert _metric(m, "appliance_audit_write_failures_total") >= 2
    finally:
        await cluster.stop_node(2)
        cluster.configure_faults(2)
        await cluster.start_node(2)
    done = await cluster.client("initiator", node=2).sign(
        key["key_id"], digest_of("audit back"), signers=["node-1", "node-3"],
        approver=cluster.client("approver", node=2))
    check_signature(key["public_key"], digest_of("audit back"), done["signature"])


async def test_metrics_pass_promtool(cluster):
    import subprocess

    await _key(cluster)
    text = (await cluster.client("auditor", node=0).metrics()).encode()
    for name in ("appliance_sign_requests_completed_total", "appliance_policy_denials_total",
                 "appliance_protocol_session_duration_seconds_bucket",
                 "appliance_protocol_round_duration_seconds_bucket",
                 "appliance_hsm_operation_duration_seconds_bucket", "appliance_presignatures_available",
                 "appliance_audit_entries_total", "appliance_build_info", "appliance_peer_errors_total"):
        assert name.encode() in text, name
    assert not re.search(rb'request_id="|req_[0-9a-f]{8}', text)  # low cardinality: ids are no label values
    promtool = promtool_path()
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=60)
    assert r.returncode == 0, (r.stdout + r.stderr).decode()


async def test_no_secret_of_the_run_in_any_audit_log(cluster):
    """Scan every node's audit export for this run's secrets: each node's key share and
    Paillier / ring-Pedersen secrets (unsealed through the node's own HSM), the users'
    private keys, the HSM PINs and the TLS keys, in hex, decimal and base64."""
    from cryptography.hazmat.primitives import serialization

    from appliance.config import load_node_config
    from appliance.storage import NodeStore
    from appliance.tss.keyshare import KeyShare
    from appliance.sealed import SealContext
    from hsm import HSM

    await _key(cluster)
    exports = b"".join([await cluster.client("auditor", node=i).audit_export() for i in range(N)])
    assert exports.count(b'{"entry"') > 30
    secrets: list[tuple[str, int | bytes]] = []
    for i in range(N):
        cfg = load_node_config(cluster.data_dirs[i] / "node.toml")
        store = NodeStore(cfg.db)
        hsm = HSM.open(cfg.hsm_config(), node_id=cfg.node_id, create_keys=False)
        try:
            for row in store.list_keys(None):
                try:
                    blob = store.share_blob(row["key_id"], row["epoch"])
                except Exception:
                    continue
                share = KeyShare.from_bytes(hsm.unseal(SealContext("share", key_id=row["key_id"],
                                                                   epoch=row["epoch"]), blob))
                secrets.append(("share", share.secret_share))
                if share.aux_secret is not None:
                    for f in ("p", "q", "P", "Q", "lam"):
                        secrets.append((f"aux.{f}", getattr(share.aux_secret, f)))
        finally:
            hsm.close()
            store.close()
        pin = (cluster.data_dirs[i] / "hsm").glob("*.pin")
        for f in pin:
            secrets.append(("pin", f.read_bytes().strip()))
        secrets.append(("tls", (cluster.data_dirs[i] / "tls" / "node.key").read_bytes()))
    for uid, pem in cluster.user_keys.items():
        k = serialization.load_pem_private_key(pem, None)
        raw = k.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                              serialization.NoEncryption())
        secrets.append((f"user {uid}", raw))
    assert sum(1 for n, _ in secrets if n == "share") >= N
    text = exports.lower()
    for name, value in secrets:
        if isinstance(value, int):
            b = value.to_bytes((value.bit_length() + 7) // 8, "big")
            forms = [format(value, "x").encode(), str(value).encode(), base64.b64encode(b).lower()]
        else:
            forms = [value.hex().encode(), base64.b64encode(value).lower(), value.lower()]
        for form in forms:
            assert len(form) < 12 or form not in text, f"{name} found in an audit log"


# ------------------------------------------------------------------------------ passkey approvals


async def test_passkey_approval_is_verified_by_every_signer(cluster):
    """Issue 17: the admin quorum's policy update enrols the approver's passkey (ES256); an
    approval made with it (the statement from GET .../approval-statement, the assertion over
    its SHA-256) releases a signature; the same assertion for another request is refused; a
    coordinator (node-1, test-only faults) that forges the assertion or drops the passkey
    approval from the job is refused by both other signers, who audit it naming the passkey."""
    key = await _key(cluster)
    soft = STATE["passkey"] = SoftPasskey(-7, "localhost", cluster.urls[0], label="laptop")

    # the console test below signs in as an admin and an auditor too
    others = STATE["others"] = {u: SoftPasskey(-7, "localhost", cluster.urls[0], label=u) for u in ("admin2", "auditor")}

    def enrol(m):
        for u in m["users"]:
            if u["id"] == "approver":
                u["passkeys"] = [soft.policy_entry()]
            if u["id"] in others:
                u["passkeys"] = [others[u["id"]].policy_entry()]
        m["webauthn"] = {"rp_id": "localhost", "origins": list(cluster.urls)}

    out = await cluster.client("admin").update_policy(await signed_policy_update(cluster, ["admin", "admin2"], enrol))
    assert out["applied"] and set(out["nodes"].values()) == {"applied"}, out
    ini, app = cluster.client("initiator", node=0), cluster.client("approver", node=0)
    got = await app.approval_statement((await ini.request_signature(key["key_id"], digest_of("passkey")))["request_id"])
    assert got["credential_ids"] == [soft.id] and got["rp_id"] == "localhost"
    rid = got["statement"]["request_id"]
    made = []
    approved = await app.decide_with_passkey(rid, lambda **kw: made.append(soft.authenticator()(**kw)) or made[-1])
    assert approved["decisions"][0]["approver"] == "approver"
    # the same assertion again, for the same statement: the approval is counted already
    await _refused(app.submit_passkey_decision(rid, got["statement"], made[0]), 403, "duplicate_approver")
    done = await ini.wait_signature(rid, timeout=60)
    check_signature(key["public_key"], digest_of("passkey"), done["signature"])
    name = f"approver by passkey laptop ({soft.id[:8]})"
    _audited(await _audit(cluster, 0), subject=rid, action="approval", decision="accepted",
             reason=f"accepted ({name})")
    for i in (1, 2):  # the signer checked the assertion itself and names the passkey
        if cluster.node_ids[i] in done["signers"]:
            assert any(e["action"] == "join_sign" and e["reason"] == f"request {rid}; {name}"
                       for e in await _audit(cluster, i))

    # the same assertion, under another request's statement: its challenge is not that statement's
    other = (await ini.request_signature(key["key_id"], digest_of("passkey replay")))["request_id"]
    stmt = (await app.approval_statement(other))["statement"]
    old = soft.assert_(Approval.from_statement(got["statement"]).challenge())
    await _refused(app.submit_passkey_decision(other, stmt, old), 403, "webauthn_bad_challenge")
    _audited(await _audit(cluster, 0), subject=other, reason=f"webauthn_bad_challenge ({name})")

    # a lying coordinator: every other signer checks the assertion itself
    for fault, reason in (("forge-approval", f"webauthn_bad_signature ({name})"),
                          ("drop-assertion", "pending_approval")):
        before = [len(await _audit(cluster, i)) for i in (1, 2)]
        req = await ini.request_signature(key["key_id"], digest_of(f"passkey {fault}"), signers=["node-2", "node-3"],
                                          nonce=f"testfault.{fault}.{time.time_ns()}")
        await app.decide_with_passkey(req["request_id"], soft.authenticator())
        with pytest.raises(ApplianceAPIError) as ei:
            await ini.wait_signature(req["request_id"], timeout=60)
        assert ei.value.code == reason.split(" ")[0], ei.value
        for n, i in enumerate((1, 2)):
            entries = (await _audit(cluster, i))[before[n]:]
            e = _audited(entries, reason=reason, action="sign_job_refused")
            assert e["actor"] == "node-1" and e["key"] == key["key_id"]
            assert not [x for x in entries if x["action"] == "join_sign"]


@pytest.mark.parametrize("case, reason", [
    ("replayed", "approval_for_other_request"),
    ("other-request", "webauthn_bad_challenge"),
    ("not-in-policy", "webauthn_unknown_credential"),
    ("wrong-origin", "webauthn_bad_origin"),
    ("no-user-verification", "webauthn_user_not_verified"),
])
async def test_a_bad_passkey_assertion_is_refused_by_every_signer(cluster, case, reason):
    """Issue 17, at the signers: node-1 (test-only faults) records a passkey decision without
    checking it (``trust-passkey``) or replays the last approved request's passkey approval
    into the job (``replay-approval``); node-2 and node-3 each refuse the job with the exact
    code, audit it, and no signature is released. (The node serving the page refuses the same
    assertions itself: tests/node/test_passkeys.py.)"""
    key, soft = await _key(cluster), STATE["passkey"]  # enrolled by the test above
    ini, app = cluster.client("initiator", node=0), cluster.client("approver", node=0)
    fault = "replay-approval" if case == "replayed" else "trust-passkey"
    before = [len(await _audit(cluster, i)) for i in (1, 2)]
    rid = (await ini.request_signature(key["key_id"], digest_of(f"bad passkey {case}"), signers=["node-2", "node-3"],
                                       nonce=f"testfault.{fault}.{time.time_ns()}"))["request_id"]
    stmt = (await app.approval_statement(rid))["statement"]
    challenge = Approval.from_statement(stmt).challenge()
    if case == "replayed":  # a sound assertion over this statement; the job carries another request's
        made = soft.assert_(challenge)
    elif case == "other-request":
        made = soft.assert_(hashlib.sha256(b"another request's statement").digest())
    elif case == "not-in-policy":
        made = SoftPasskey(-7, "localhost", cluster.urls[0]).assert_(challenge)
    elif case == "wrong-origin":
        made = soft.assert_(challenge, origin="https://evil.example")
    else:
        made = soft.assert_(challenge, flags=FLAG_UP)
    await app.submit_passkey_decision(rid, stmt, made)  # node-1 takes it and starts the job
    with pytest.raises(ApplianceAPIError) as ei:
        await ini.wait_signature(rid, timeout=60)
    assert ei.value.code == reason, ei.value
    for n, i in enumerate((1, 2)):
        entries = (await _audit(cluster, i))[before[n]:]
        e = _audited(entries, action="sign_job_refused", reason=reason if case == "not-in-policy"
                     else f"{reason} (approver by passkey laptop ({soft.id[:8]}))")
        assert e["actor"] == "node-1" and e["key"] == key["key_id"]
        assert not [x for x in entries if x["action"] == "join_sign"]
    assert (await ini.get_sign_request(rid))["status"] == "failed"


async def _console(cluster, who: SoftPasskey) -> dict:
    """Sign in to node-1's console with a passkey (over HTTP, as the page does): the cookie."""
    async with aiohttp.ClientSession() as s:
        async with s.post(cluster.urls[0] + "/ui/api/challenge", json={}, ssl=False) as r:
            challenge = (await r.json())["challenge"]
        made = who.assert_(base64.urlsafe_b64decode(challenge + "=" * (-len(challenge) % 4)))
        async with s.post(cluster.urls[0] + "/ui/api/sign-in", ssl=False,
                          json={"challenge": challenge, "webauthn": made.to_json()}) as r:
            assert r.status == 200, await r.text()
            return {"Cookie": f"appliance_ui={r.cookies['appliance_ui'].value}"}


async def _ui(cluster, cookie: dict, path: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession(headers=cookie) as s:
        async with s.get(cluster.urls[0] + "/ui/api/" + path, ssl=False) as r:
            return r.status, await r.json()


async def test_the_console_shows_each_person_what_they_may_approve_or_read(cluster):
    """Issue 17: the pending list holds the requests the signed-in person may approve; a
    request's page, statement and audit entries are for who may approve or initiate on its key,
    or audit (an admin here may do neither: answered as a missing request, ``not_found``); the page names the policy
    rule and the initiator; a rejection's reason is signed with it and the initiator sees it."""
    key, soft, others = await _key(cluster), STATE["passkey"], STATE["others"]
    ini = cluster.client("initiator", node=0)
    rid = (await ini.request_signature(key["key_id"], digest_of("console access")))["request_id"]
    approver, admin, auditor = (await _console(cluster, soft), await _console(cluster, others["admin2"]),
                                await _console(cluster, others["auditor"]))
    pending = lambda got: [r["request_id"] for r in got[1]["sign_requests"]]  # noqa: E731
    assert rid in pending(await _ui(cluster, approver, "sign-requests?view=pending"))
    for who in (admin, auditor):  # neither may approve: not in their pending list
        assert rid not in pending(await _ui(cluster, who, "sign-requests?view=pending"))
    status, page = await _ui(cluster, approver, f"sign-requests/{rid}")
    assert (status, page["rule"], page["initiator"], page["decisions"]) == (200, "[signing]", "initiator", [])
    assert (await _ui(cluster, auditor, f"sign-requests/{rid}/audit"))[0] == 200
    # a request the person may not read is answered exactly as one that does not exist
    denied = (404, {"error": {"code": "not_found", "message": "unknown sign request"}})
    missing = "req_" + "0" * 32
    for path in ("", "/audit", "/approval-statement?decision=approve"):
        assert await _ui(cluster, admin, f"sign-requests/{rid}{path}") == denied, path
        assert await _ui(cluster, admin, f"sign-requests/{missing}{path}") == denied, path
    # a decision by a non-reader: refused as unknown before its statement is compared
    async with aiohttp.ClientSession(headers=admin) as s:
        async with s.post(cluster.urls[0] + f"/ui/api/sign-requests/{rid}/decisions", ssl=False,
                          json={"approval": {"statement": {"decision": "approve"}, "webauthn": {
                              k: "AA" for k in ("credential_id", "authenticator_data", "client_data_json",
                                                "signature")}}}) as r:
            assert (r.status, await r.json()) == denied
    # a rejection with its reason, through the console: the initiator reads it
    status, got = await _ui(cluster, approver, f"sign-requests/{rid}/approval-statement?decision=reject"
                            "&reason=not%20in%20today%27s%20payment%20run")
    assert (status, got["statement"]["reason"]) == (200, "not in today's payment run"), got
    made = soft.assert_(Approval.from_statement(got["statement"]).challenge())
    async with aiohttp.ClientSession(headers=approver) as s:
        async with s.post(cluster.urls[0] + f"/ui/api/sign-requests/{rid}/decisions", ssl=False,
                          json={"approval": {"statement": got["statement"], "webauthn": made.to_json()}}) as r:
            assert r.status == 200, await r.text()
    seen = await ini.get_sign_request(rid)
    assert seen["status"] == "rejected" and seen["decisions"][-1] == {
        "approver": "approver", "decision": "reject", "signed_at": got["statement"]["signed_at"],
        "reason": "not in today's payment run"}
    assert seen["error"]["message"] == "approver rejected the request: not in today's payment run"
