"""Idempotency in process (issue 15, item 2): one request per (initiator, nonce). Three nodes,
each on a real NodeStore on tmp_path, their peer links wired to each other's services in
memory (appliance/request_claims.py, SignRequests.create); fakes of the other ports."""

from __future__ import annotations

import asyncio
import time
import types
from dataclasses import replace
from typing import Any

import pytest

from appliance.cluster.health import PeerHealth
from appliance.errors import ServiceError
from appliance.policy import make_request
from appliance.ports import Opened
from appliance.recorder import Recorder
from appliance.request_claims import NonceReused, RequestClaims, choose_owner, claim_content
from appliance.signing import states
from appliance.signing.reading import PayloadReader
from appliance.signing.requests import SignRequests
from appliance.storage import NodeStore
from appliance.transport import PeerError
from appliance.tss.group import G
from tests.node.fakes import FakeClock, FakePeers, FakePorts, Users, fake_runtime
from tests.node.test_services_pools import _sealed

KEY = "key_" + "c" * 24
DIGEST = b"\x33" * 32
NONCE_REUSED = ("nonce_reused", "this nonce was already used by this initiator for a different request "
                "(a retry must send the same request)")


class _Link:
    """PeerLink of node ``me``: claims and sign-request reads answered by the other nodes'
    services (an unreachable node raises PeerError, as PeerClient does)."""

    def __init__(self, nodes: dict, me: int) -> None:
        self.nodes, self.me = nodes, me
        self.down: set[int] = set()
        self.sent: list[tuple[int, str, str]] = []

    async def request(self, peer: Any, method: str, path: Any, *, json_body: Any = None,
                      data: bytes | None = None, content_type: str | None = None,
                      timeout: float = 10.0, pool: str = "protocol") -> Any:
        self.sent.append((peer.index, method, str(path)))
        if peer.index in self.down:
            raise PeerError(peer, "unreachable (test)")
        node = self.nodes[peer.index]
        parts = str(path).split("/")  # /v1/peer/<kind>/<id>[/<verb>]
        try:
            if parts[3:6:2] == ["requests", "claim"]:
                return node.claims.confirm(parts[4], json_body, self.me)
            if method == "GET" and parts[3] == "sign-requests":
                return await node.signing.peer_get(parts[4], 0.0)
        except ServiceError as exc:
            raise PeerError(peer, exc.message, 404 if exc.code == "not_found" else 400,
                            {"error": exc.to_error()}) from None
        raise AssertionError(f"unexpected peer call {method} {path}")


def _node(tmp_path, users: Users, clock: FakeClock, nodes: dict, i: int):
    store = NodeStore(tmp_path / f"node-{i + 1}.db")
    store.put_pending_key(KEY, G.to_bytes(), 2, [0, 1, 2], 0, 2048, _sealed(), b"\x07" * 32)
    store.set_key_status(KEY, "active")
    rt, ports = fake_runtime(users.policy, clock=clock), FakePorts(store)
    rt.index, rt.me = i, rt.peers[i]
    link = _Link(nodes, i)
    row = {"key_id": KEY, "public_key": G.to_bytes(), "chain_code": None, "threshold": 2,
           "participants": [0, 1, 2], "epoch": 0}

    async def healthy(indices, **kw):
        return sorted(indices), []

    async def hsm_ok():
        return None

    claims = RequestClaims(rt, replay=ports.slot("replay"), peers=link)
    signing = SignRequests(
        rt, Recorder(rt, ports.slot("audit"), ports.slot("transactions")),
        shares=types.SimpleNamespace(active_key=lambda key_id: row, known_key=lambda key_id: row), reader=PayloadReader(rt, replay=ports.slot("replay")),
        health=types.SimpleNamespace(split_healthy=healthy, require_hsm=hsm_ok),
        quarantine=types.SimpleNamespace(not_quarantined=lambda idx: list(idx)), request_use=None, pool=None,
        coordinate=None, claims=claims, peers=link, **ports.slots("requests", "statements", "key_store", "presigs"))
    nodes[i] = types.SimpleNamespace(store=store, rt=rt, ports=ports, link=link, claims=claims, signing=signing)
    return nodes[i]


@pytest.fixture
def cluster(tmp_path):
    users, clock, nodes = Users(), FakeClock(), {}
    for i in range(3):
        _node(tmp_path, users, clock, nodes, i)
    yield types.SimpleNamespace(users=users, clock=clock, nodes=nodes)
    for n in nodes.values():
        n.store.close()


def _request(c, *, later: int = 0, nonce: str = "pay-1", digest: bytes = DIGEST):
    """The initiator's request, signed ``later`` seconds on (a retry from a new process)."""
    return c.users.request(c.clock.now() + later, key_id=KEY, digest=digest, derivation_path="m", nonce=nonce)


def _create(c, node: int, sr, *, digest: bytes = DIGEST, signers=None):
    return asyncio.run(c.nodes[node].signing.create(types.SimpleNamespace(id="initiator"), KEY, digest.hex(), "m",
                                                    signers, request=sr.to_json()))


def _claimed(store: NodeStore, rid: str) -> tuple:
    return store.database.one("SELECT initiator, nonce, content, owner FROM node_request_claims WHERE request_id=?",
                              (rid,))


def test_the_id_is_the_idempotency_key_and_the_content_what_a_retry_repeats(cluster):
    sr, retry = _request(cluster), _request(cluster, later=2)
    assert sr.to_json() != retry.to_json() and sr.request_id == retry.request_id
    assert sr.request.content_hash() == retry.request.content_hash()
    assert replace(sr.request, policy_hash="11" * 32).content_hash() == sr.request.content_hash()
    for other in (replace(sr.request, digest="44" * 32), replace(sr.request, derivation_path="m/1"),
                  replace(sr.request, network="testnet"), replace(sr.request, key_id="key_" + "d" * 24)):
        assert other.content_hash() != sr.request.content_hash() and other.request_id == sr.request_id
    assert _request(cluster, nonce="pay-2").request_id != sr.request_id
    # the signers a body names are part of what a claim records
    assert claim_content(sr.request, None) != claim_content(sr.request, ["node-1", "node-2"])
    assert claim_content(sr.request, ["node-2", "node-1"]) == claim_content(sr.request, ["node-1", "node-2"])


def test_a_claim_is_durable_and_the_first_one_wins(cluster, tmp_path):
    store = cluster.nodes[0].store
    assert store.claim_request("req_" + "a" * 32, "initiator", "n", "c1", 1) == {"content": "c1", "owner": 1}
    assert store.claim_request("req_" + "a" * 32, "initiator", "n", "c2", 2) == {"content": "c1", "owner": 1}
    store.close()
    reopened = NodeStore(tmp_path / "node-1.db")
    try:
        assert reopened.claim_request("req_" + "a" * 32, "initiator", "n", "c3", 0) == {"content": "c1", "owner": 1}
    finally:
        reopened.close()
    cluster.nodes[0].store = NodeStore(tmp_path / "node-1.db")  # closed by the fixture


def test_the_owner_is_the_one_named_most_ties_to_the_lowest_index():
    assert choose_owner([2, 1, 1]) == 1
    assert choose_owner([2, 2, 0]) == 2
    assert choose_owner([2, 1]) == 1
    assert choose_owner([0]) == 0


def test_a_retry_to_the_same_node_and_to_another_answers_the_first_request(cluster):
    first = _create(cluster, 0, _request(cluster))
    assert first.new and first.view["status"] == states.PENDING
    rid = first.view["request_id"]
    for n in cluster.nodes.values():  # claimed on every node, for node-1
        assert _claimed(n.store, rid)[3] == 0
    again = _create(cluster, 0, _request(cluster, later=1))
    assert (again.new, again.view) == (False, first.view)
    other = _create(cluster, 2, _request(cluster, later=2))  # node-3 asks node-1, the owner, for it
    assert (other.new, other.view["request_id"], other.view["request"]) == (False, rid, first.view["request"])
    assert cluster.nodes[2].store.get_sign_request(rid) is None  # kept once, by its owner
    assert (0, "GET", f"/v1/peer/sign-requests/{rid}") in cluster.nodes[2].link.sent
    assert [e["action"] for e in cluster.nodes[2].ports.audit.entries] == []


@pytest.mark.parametrize("node", [0, 1])
def test_a_different_request_under_the_nonce_is_409_nonce_reused_and_audited(cluster, node):
    rid = _create(cluster, 0, _request(cluster)).view["request_id"]
    other = b"\x44" * 32
    with pytest.raises(NonceReused) as ei:
        _create(cluster, node, _request(cluster, later=1, digest=other), digest=other)
    assert (ei.value.code, ei.value.message) == NONCE_REUSED
    entry = cluster.nodes[node].ports.audit.entries[-1]
    assert (entry["action"], entry["subject"], entry["decision"], entry["reason"]) == \
        ("sign_request", rid, "denied", "nonce_reused")
    # other signers named: another request too
    with pytest.raises(NonceReused):
        _create(cluster, node, _request(cluster, later=2), signers=["node-1", "node-2"])
    assert cluster.nodes[0].store.get_sign_request(rid)["digest"] == DIGEST


def test_another_node_that_alone_saw_the_first_request_still_refuses_a_different_one(cluster):
    """node-3 was the only other node reached when node-1 took the request; node-2, which has
    no record, learns it from node-3's answer."""
    cluster.nodes[0].link.down = {1}
    rid = _create(cluster, 0, _request(cluster)).view["request_id"]
    assert _claimed(cluster.nodes[1].store, rid) is None
    other = b"\x44" * 32
    with pytest.raises(NonceReused):
        _create(cluster, 1, _request(cluster, later=1, digest=other), digest=other)


def test_the_first_sending_raced_to_two_nodes_is_kept_once(cluster):
    async def race():
        a, b = cluster.nodes[0].signing, cluster.nodes[1].signing
        user = types.SimpleNamespace(id="initiator")
        return await asyncio.gather(
            a.create(user, KEY, DIGEST.hex(), "m", request=_request(cluster).to_json()),
            b.create(user, KEY, DIGEST.hex(), "m", request=_request(cluster, later=1).to_json()))

    x, y = asyncio.run(race())
    assert sorted([x.new, y.new]) == [False, True]
    assert x.view["request_id"] == y.view["request_id"]
    kept = [i for i, n in cluster.nodes.items() if n.store.get_sign_request(x.view["request_id"]) is not None]
    assert len(kept) == 1


def test_a_retry_whose_owner_is_down_is_created_where_it_arrives(cluster):
    rid = _create(cluster, 0, _request(cluster)).view["request_id"]
    cluster.nodes[1].link.down = {0}
    out = _create(cluster, 1, _request(cluster, later=1))
    assert out.new and out.view["request_id"] == rid  # the same id: the holders sign it once


def test_a_peer_claim_is_checked_before_it_is_recorded(cluster):
    claims, sr = cluster.nodes[1].claims, _request(cluster)
    with pytest.raises(ServiceError) as ei:
        claims.confirm(sr.request_id, {"request": {"statement": {}}}, 0)
    assert (ei.value.code, ei.value.message) == ("bad_claim", "a claim carries the signed request and the signers named")
    with pytest.raises(ServiceError) as ei:
        claims.confirm(sr.request_id, {"request": sr.to_json(), "signers": "node-1"}, 0)
    assert (ei.value.code, ei.value.message) == ("bad_claim", "a claim's signers are a list of node ids or null")
    with pytest.raises(ServiceError) as ei:
        claims.confirm("req_" + "0" * 32, {"request": sr.to_json()}, 0)
    assert (ei.value.code, ei.value.message) == ("request_mismatch", "the claim names another request")
    forged = make_request(cluster.users.keys["approver"], cluster_id="fake", policy_hash=cluster.users.policy.hash,
                          initiator="initiator", now=cluster.clock.now(), ttl_s=600, key_id=KEY, digest=DIGEST,
                          nonce="pay-1")
    with pytest.raises(ServiceError) as ei:
        claims.confirm(forged.request_id, {"request": forged.to_json()}, 0)
    assert (ei.value.code, ei.value.message) == ("bad_signature", "the request is not signed by its initiator")
    assert _claimed(cluster.nodes[1].store, sr.request_id) is None
    assert claims.confirm(sr.request_id, {"request": sr.to_json()}, 2) == {
        "request_id": sr.request_id, "content": claim_content(sr.request, None), "owner": "node-3"}


def test_the_readiness_a_peer_gives_with_its_claim_answer_spares_the_health_call(cluster):
    """Issue 18 aim 2: a request's claim answer carries the peer's readiness (as ``GET
    /v1/peer/health`` gives it); the health check of the same request takes it and asks no
    peer again: health calls per created request 2 -> 0. A readiness from before the request,
    or a peer that said it is not ready, is asked again."""
    c, n0 = cluster, cluster.nodes[0]
    ready = {1: True, 2: False}

    def answer(peer, method, path, body):
        parts = str(path).split("/")
        if parts[3:6:2] == ["requests", "claim"]:
            return {**c.nodes[peer.index].claims.confirm(parts[4], body, 0), "ready": ready[peer.index]}
        assert (method, str(path)) == ("GET", "/v1/peer/health")
        return {"ready": True}

    link = FakePeers(answer)
    health = PeerHealth(n0.rt, link, Opened("HSM"))
    claims = RequestClaims(n0.rt, replay=n0.ports.slot("replay"), peers=link, seen=health.note)
    sr = _request(c)

    async def run(since):
        await claims.claim_everywhere(sr, None, claims.claim_here(sr, None))
        return await health.split_healthy([0, 1, 2], since=since)

    assert asyncio.run(run(time.monotonic())) == ([0, 1, 2], [])
    health_calls = [s for s in link.sent if s[2] == "/v1/peer/health"]
    assert health_calls == [("node-3", "GET", "/v1/peer/health", None)]  # node-2 said ready: not asked
    link.sent.clear()
    ready[2] = True
    later = time.monotonic() + 3600  # readiness given before the request began: asked again
    assert asyncio.run(health.split_healthy([0, 1, 2], since=later)) == ([0, 1, 2], [])
    assert [s[0] for s in link.sent] == ["node-2", "node-3"]
