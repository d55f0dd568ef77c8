"""Idempotent sign requests on a real 2-of-3 cluster (issue 15, item 2): the statement's nonce
is the idempotency key, durably and cluster-wide.

The same request under one (initiator, nonce), signed again with a fresh ``created_at`` (as a
new client process would), sent to node-1, then node-2, then to every node at once: one
request (202 once, then 200 with the same id and its current state), one signature. The
first sending raced to two nodes at once: one request. A different digest under a used
nonce, to any node: 409 ``nonce_reused``, audited."""

from __future__ import annotations

import asyncio
import time

import pytest

from api.client import ApplianceAPIError
from appliance.config import load_node_config
from appliance.ids import peer_path, url_path
from appliance.policy import make_request
from appliance.request_claims import claim_content
from appliance.transport import PeerClient
from tests.cluster_fixtures import check_signature, cluster_fixture, cluster_marks, digest_of

pytestmark = cluster_marks("idempotency")

cluster = cluster_fixture()


class _Sender:
    """Signs the initiator's request anew for each sending (a fresh ``created_at``, as a new
    process would) and posts it with a new client; the HTTP statuses are kept."""

    def __init__(self, cluster, key_id: str, pol: dict, nonce: str) -> None:
        self.cluster, self.key_id, self.pol, self.nonce = cluster, key_id, pol, nonce
        self.statuses: list[int] = []
        self.sent = 0

    async def post(self, node: int, digest: bytes) -> dict:
        self.sent += 1  # a later created_at each time (no two statements alike)
        sr = make_request(self.cluster.user_keys["initiator"], cluster_id=self.pol["cluster_id"],
                          policy_hash=self.pol["policy_hash"], initiator="initiator",
                          now=time.time() + self.sent, ttl_s=600, key_id=self.key_id, digest=digest,
                          nonce=self.nonce)
        client = self.cluster.client("initiator", node=node)
        check = client.observe

        def observe(method, path, status, ctype, body):
            if method == "POST":
                self.statuses.append(status)
            if check is not None:
                check(method, path, status, ctype, body)

        client.observe = observe
        return await client.request("POST", url_path("v1", "keys", self.key_id, "sign-requests"),
                                    {"digest": digest.hex(), "request": sr.to_json()})


async def _nonce_reused(coro) -> None:
    with pytest.raises(ApplianceAPIError) as ei:
        await coro
    assert (ei.value.status, ei.value.code) == (409, "nonce_reused"), ei.value
    assert ei.value.message == ("this nonce was already used by this initiator for a different request "
                                "(a retry must send the same request)")


async def test_a_retried_request_is_one_request_and_one_signature_on_every_node(cluster):
    key = await cluster.client("admin").create_key(threshold=2)
    kid = key["key_id"]
    pol = await cluster.client("initiator").policy()
    digest = digest_of("idempotency: pay 1 BTC")
    s = _Sender(cluster, kid, pol, f"pay-{time.time_ns()}")

    first = await s.post(0, digest)
    again = await s.post(1, digest)  # another node, a statement signed again
    assert s.statuses == [202, 200]
    assert again["request_id"] == first["request_id"] and again["status"] == "pending"
    assert again["request"] == first["request"]  # the first request, as its owner keeps it
    rid = first["request_id"]
    await cluster.client("approver", node=1).approve(rid)
    signed = await cluster.client("initiator").wait_signature(rid, timeout=120)
    check_signature(key["public_key"], digest, signed["signature"])

    views = await asyncio.gather(*(s.post(i, digest) for i in (0, 1, 2, 0, 1, 2)))
    assert s.statuses[2:] == [200] * 6
    for v in views:
        assert (v["request_id"], v["status"], v["signature"]) == (rid, "signed", signed["signature"])
    # a different request under the nonce, to any node
    for node in (2, 1):
        await _nonce_reused(s.post(node, digest_of("idempotency: pay 100 BTC")))
    entries = await cluster.client("auditor", node=1).audit()
    assert [e["reason"] for e in entries if e["subject"] == rid and e["decision"] == "denied"] == ["nonce_reused"]
    # one request, one signature, cluster-wide
    for node in range(3):
        entries = await cluster.client("auditor", node=node).audit()
        made = [e for e in entries if e["action"] == "sign_request" and e["decision"] != "denied"]
        assert [e["subject"] for e in made if e["subject"] == rid] == ([rid] if node == 0 else [])
        assert len([e for e in entries if e["action"] == "signed" and e["subject"] == rid]) == (node == 0)


async def test_the_first_sending_raced_to_two_nodes_makes_one_request(cluster):
    kid = (await cluster.client("initiator").list_keys())[0]["key_id"]
    pol = await cluster.client("initiator").policy()
    digest = digest_of("idempotency: raced")
    s = _Sender(cluster, kid, pol, f"race-{time.time_ns()}")
    a, b = await asyncio.gather(s.post(0, digest), s.post(1, digest))
    assert sorted(s.statuses) == [200, 202]
    assert a["request_id"] == b["request_id"] and a["request"] == b["request"]
    pending = [r["request_id"] for node in range(3)
               for r in await cluster.client("initiator", node=node).pending_requests()]
    assert pending.count(a["request_id"]) == 1


async def test_a_retried_key_operation_is_the_first_operation(cluster):
    pol = await cluster.client("admin").policy()
    nonce, statuses = f"keygen-{time.time_ns()}", []

    async def post(node: int, later: int, threshold: int) -> dict:
        sr = make_request(cluster.user_keys["admin"], cluster_id=pol["cluster_id"], policy_hash=pol["policy_hash"],
                          initiator="admin", now=time.time() + later, ttl_s=600, action="keygen",
                          params={"threshold": threshold}, nonce=nonce)
        client = cluster.client("admin", node=node)
        check = client.observe

        def observe(method, path, status, ctype, body):
            statuses.append(status)
            if check is not None:
                check(method, path, status, ctype, body)

        client.observe = observe
        return await client.request("POST", "/v1/keys", {"threshold": threshold, "request": sr.to_json()})

    first = await post(0, 0, 2)
    again = await post(1, 1, 2)
    assert statuses == [202, 200] and again["operation_id"] == first["operation_id"]
    done = await cluster.client("admin").wait_operation(first["operation_id"], 120)
    assert done["status"] == "done"
    await _nonce_reused(post(2, 2, 3))
    keys = await cluster.client("admin", node=1).list_keys()
    assert [k["key_id"] for k in keys].count(done["key_id"]) == 1


async def test_a_peer_claim_answer_carries_the_peers_readiness(cluster):
    """Issue 18 aim 2: ``POST /v1/peer/requests/{id}/claim`` answers with the peer's readiness
    (as ``GET /v1/peer/health`` gives it), so the claimer's health check in the same request
    asks that peer nothing more (tests/node/test_request_claims.py counts the calls)."""
    pol = await cluster.client("initiator").policy()
    sr = make_request(cluster.user_keys["initiator"], cluster_id=pol["cluster_id"], policy_hash=pol["policy_hash"],
                      initiator="initiator", now=time.time(), ttl_s=600, key_id="key_" + "a" * 24,
                      digest=digest_of("claim readiness"), nonce=f"ready-{time.time_ns()}")
    link = PeerClient(load_node_config(cluster.data_dirs[0] / "node.toml"))  # node-1's own identity
    try:
        answer = await link.request(link.config.cluster.by_index(1), "POST", peer_path("requests", sr.request_id, "claim"),
                                    json_body={"request": sr.to_json(), "signers": None})
    finally:
        await link.close()
    assert answer == {"request_id": sr.request_id, "content": claim_content(sr.request, None),
                      "owner": "node-1", "ready": True}
