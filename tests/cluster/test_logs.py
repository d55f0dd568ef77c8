"""Logs on a real 2-of-3 cluster (issue 15, item 1): every node's ``node.log`` (its data dir) is
JSON lines; the ``X-Request-Id`` a client sends comes back in the response header, is in the
log lines of the node it reached, of the coordinator and of a participant of the job it causes,
and in the audit entries it causes on each; and no node's whole log holds the run's secrets
(the users' private keys, the HSM PINs, the signed request's body)."""

from __future__ import annotations

import base64
import json
import time

from tests.cluster_fixtures import check_signature, cluster_fixture, cluster_marks, digest_of

pytestmark = cluster_marks("logs")

cluster = cluster_fixture()


def _lines(cluster, i: int) -> list[dict]:
    out = []
    for line in (cluster.data_dirs[i] / "node.log").read_text(errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


async def test_the_request_id_reaches_peers_logs_and_audit_and_no_secret_is_logged(cluster):
    key = await cluster.client("admin").create_key(threshold=2)
    kid = key["key_id"]
    digest = digest_of(f"logs: pay 1 BTC {time.time_ns()}")
    create_id, approve_id = f"create-{time.time_ns()}", f"approve-{time.time_ns()}"

    initiator = cluster.client("initiator", node=0)
    initiator.request_id = create_id
    req = await initiator.request_signature(kid, digest)
    assert initiator.last_request_id == create_id
    rid = req["request_id"]
    approver = cluster.client("approver", node=0)
    approver.request_id = approve_id
    await approver.approve(rid)  # the rule is met: node-1 coordinates the sign job now
    assert approver.last_request_id == approve_id
    plain = cluster.client("initiator", node=0)
    signed = await plain.wait_signature(rid, timeout=120)
    assert plain.last_request_id and plain.last_request_id not in (create_id, approve_id)
    check_signature(key["public_key"], digest, signed["signature"])

    # the node reached: one access event per request, by route template, with the user
    logs = [_lines(cluster, i) for i in range(3)]
    access = [e for e in logs[0] if e.get("event") == "http_request" and e.get("request_id") == create_id]
    # (the client reads the policy first, under the same id)
    assert [(e["method"], e["route"], e["status"], e["user"], e["node"]) for e in access] == [
        ("GET", "/v1/policy", 200, "initiator", "node-1"),
        ("POST", "/v1/keys/{key_id}/sign-requests", 202, "initiator", "node-1")]
    # the coordinator's job and rounds, and a participant's, under the approval's id
    coord = {e["event"] for e in logs[0] if e.get("request_id") == approve_id}
    assert {"http_request", "policy_decision", "job_started", "protocol_round", "job_finished"} <= coord, coord
    joined = [i for i in (1, 2) if any(e.get("event") == "job_joined" and e.get("request_id") == approve_id
                                       for e in logs[i])]
    assert len(joined) == 1, joined  # 2-of-3: one other signer
    part = joined[0]
    rounds = [e for e in logs[part] if e.get("event") == "protocol_round" and e.get("request_id") == approve_id]
    assert "sign" in {e["protocol"] for e in rounds} and {e["kind"] for e in rounds} == {"sign"}
    assert all(isinstance(e["duration_ms"], float) for e in rounds)

    # the audit entries each request caused, on the node reached and on the participant
    audit0 = await cluster.client("auditor", node=0).audit()
    by_id = {}
    for e in audit0:
        by_id.setdefault(e.get("request_id"), []).append((e["action"], e["subject"]))
    assert ("sign_request", rid) in by_id[create_id]
    assert ("approval", rid) in by_id[approve_id] or any(a == "approval" for a, _ in by_id[approve_id])
    assert any(a == "sign_session_start" for a, _ in by_id[approve_id]), by_id[approve_id]
    audit_p = await cluster.client("auditor", node=part).audit()
    assert any(e["action"] == "join_sign" and e.get("request_id") == approve_id for e in audit_p)

    # no secret in any line of any node's whole log
    secrets: dict[str, str] = {}
    for user, pem in cluster.user_keys.items():
        text = pem.decode() if isinstance(pem, bytes) else pem
        body = "".join(ln for ln in text.splitlines() if not ln.startswith("-----"))
        secrets[f"{user} private key"] = body
        secrets[f"{user} private key (hex)"] = base64.b64decode(body).hex()
        secrets[f"{user} private key (raw tail)"] = base64.b64decode(body)[-32:].hex()
    for i, d in enumerate(cluster.data_dirs):
        for pin in (d / "hsm").glob("*.pin"):
            secrets[f"node {i} PIN {pin.name}"] = pin.read_text().strip()
    statement = json.dumps(req.get("request") or {}, sort_keys=True)
    secrets["the signed statement"] = statement if len(statement) > 2 else "\x00"
    secrets["the digest"] = digest.hex()
    assert all(len(v) >= 8 for v in secrets.values()), secrets.keys()
    for i, d in enumerate(cluster.data_dirs):
        whole = (d / "node.log").read_text(errors="replace")
        assert whole.count("\n") > 4 and "protocol_round" in whole  # a whole run's log (the keygen at least)
        found = [name for name, v in secrets.items() if v in whole]
        assert found == [], (cluster.node_ids[i], found)
        assert "-----BEGIN" not in whole and "PRIVATE KEY" not in whole
