"""A real 2-of-3 cluster (node processes, one SoftHSM2 token each, HTTPS with pinned mTLS):
DKG, signing through every pair (request -> approve -> signature, as the default policy asks),
independent verification, concurrency, refresh, the API surface, and nodes going away and
coming back. One cluster for the whole module."""

from __future__ import annotations

import asyncio
import itertools
import re
import time

import pytest

from api.client import ApplianceAPIError
from tests.cluster_fixtures import check_signature, cluster_fixture, cluster_marks, digest_of
from tests.lifecycle_helpers import db, eventually
from tests.signing_flow import sign

#: well-formed ids that name nothing (a malformed id is a 400 bad_id, not a 404)
UNKNOWN = {"key_id": "key_" + "0" * 24, "op_id": "op_" + "0" * 24, "request_id": "req_" + "0" * 32,
           "job_id": "job_" + "0" * 24, "node_id": "node-9"}

pytestmark = cluster_marks("node-cluster")  # one cluster per worker process

# [aux] pool = 1: the cluster's lowest node keeps one aux-info ready (issue 18 aim 4)
cluster = cluster_fixture(users={"approver2": ["approver"]}, node_extra={i: {"aux": {"pool": 1}} for i in range(3)})
STATE: dict = {}


async def _key(cluster) -> dict:
    if "key" not in STATE:
        STATE["key"] = await cluster.client("admin").create_key(threshold=2)
    return STATE["key"]


async def test_dkg_2_of_3(cluster):
    key = await _key(cluster)
    assert key["threshold"] == 2 and key["nodes"] == ["node-1", "node-2", "node-3"]
    assert len(bytes.fromhex(key["public_key"])) == 33 and key["epoch"] == 0
    # every node holds the key with the same public key (a node holds only its share)
    for i in range(3):
        seen = await cluster.client("auditor", node=i).get_key(key["key_id"])
        assert seen["public_key"] == key["public_key"] and seen["status"] == "active"
        listed = await cluster.client("initiator", node=i).list_keys()
        assert key["key_id"] in [k["key_id"] for k in listed]


@pytest.mark.parametrize("pair", list(itertools.combinations(range(3), 2)))
async def test_sign_through_each_pair(cluster, pair):
    key = await _key(cluster)
    # coordinate from a node outside the pair where there is one, else from the pair
    via = ({0, 1, 2} - set(pair)).pop() if pair == (0, 1) else pair[1]
    c = cluster.client("initiator", node=via)
    digest = digest_of(f"pair {pair}")
    names = [cluster.node_ids[i] for i in pair]
    req = await c.request_signature(key["key_id"], digest, signers=names)
    assert req["status"] == "pending" and req["signers"] == names  # the policy wants an approver
    approved = await cluster.client("approver", node=via).approve(req["request_id"])
    assert approved["status"] in ("signing", "signed")
    done = await c.wait_signature(req["request_id"], timeout=60)
    assert done["status"] == "signed" and done["signers"] == names
    assert done["public_key"] == key["public_key"]
    check_signature(key["public_key"], digest, done["signature"])
    # the node's own verify route agrees, and rejects another digest
    assert await c.verify(digest, done["signature"], public_key=key["public_key"])
    assert not await c.verify(digest_of("other"), done["signature"]["der"], key_id=key["key_id"])


async def test_concurrent_signatures_while_healthz_answers(cluster):
    key = await _key(cluster)
    clients = [cluster.client("initiator", node=i) for i in range(3)]
    approvers = [cluster.client("approver", node=i) for i in range(3)]
    digests = [digest_of(f"concurrent {i}") for i in range(20)]
    health = cluster.client("auditor", node=0)
    latencies: list[float] = []
    stop = asyncio.Event()

    async def poll_health():
        while not stop.is_set():
            t = time.perf_counter()
            assert (await health.healthz())["status"] == "ok"
            latencies.append(time.perf_counter() - t)
            await asyncio.sleep(0.05)

    poller = asyncio.create_task(poll_health())
    try:
        reqs = await asyncio.gather(*(clients[i % 3].request_signature(key["key_id"], d)
                                      for i, d in enumerate(digests)))
        await asyncio.gather(*(approvers[i % 3].approve(r["request_id"]) for i, r in enumerate(reqs)))
        done = await asyncio.gather(*(clients[i % 3].wait_signature(r["request_id"], timeout=150)
                                      for i, r in enumerate(reqs)))
    finally:
        stop.set()
        await poller
    sigs = [d["signature"] for d in done]
    assert len({s["r"] for s in sigs}) == 20 and len({s["der"] for s in sigs}) == 20
    for d, s in zip(digests, sigs):
        check_signature(key["public_key"], d, s)
    assert len(latencies) >= 5, "healthz stopped answering during the signing load"
    print(f"healthz during load: {len(latencies)} answers, max {max(latencies) * 1000:.0f} ms")


def _connections_opened(metrics: str, peer: str) -> float | None:
    m = re.search(rf'^appliance_peer_connections_opened_total\{{peer="{peer}",pool="protocol"\}} (\S+)$',
                  metrics, re.M)
    return float(m.group(1)) if m else None


async def test_peer_connections_are_kept_alive(cluster):
    """One ClientSession per peer, reused: signatures after the first open no new TCP (TLS)
    connection to the peer (each one makes a dozen peer calls at its coordinator)."""
    key = await _key(cluster)
    ini, app = cluster.client("initiator", node=0), cluster.client("approver", node=0)

    async def sign_once(tag: str) -> None:
        d = digest_of(tag)
        done = await sign(ini, app, key["key_id"], d, timeout=60, signers=["node-1", "node-2"])
        check_signature(key["public_key"], d, done["signature"])

    await sign_once("keep-alive warm-up")
    before = _connections_opened(await cluster.metrics(0), "node-2")
    assert before is not None and before >= 1
    for i in range(3):
        await sign_once(f"keep-alive {i}")
    after = _connections_opened(await cluster.metrics(0), "node-2")
    assert after - before <= 1, f"{after - before} new connections to node-2 over 3 signatures"


async def test_refused_requests_change_nothing(cluster):
    key = await _key(cluster)
    ini = cluster.client("initiator", node=0)
    admin = cluster.client("admin", node=0)
    before_keys = await admin.list_keys()
    before_reqs = await ini.pending_requests()
    cases = [
        (ini.request_signature(key["key_id"], b"short"), 400, "bad_digest"),
        (ini.request("POST", f"/v1/keys/{key['key_id']}/sign-requests", {"digest": "zz" * 32}), 400, "bad_digest"),
        (ini.request("POST", f"/v1/keys/{key['key_id']}/sign-requests", ["not", "an", "object"]), 400, "bad_json"),
        (ini.request_signature(key["key_id"], digest_of("x"), signers=["node-1"]), 400, "bad_signers"),
        (ini.request_signature(key["key_id"], digest_of("x"), signers=["node-1", "node-9"]), 400, "unknown_node"),
        (ini.request_signature(UNKNOWN["key_id"], digest_of("x")), 404, "not_found"),
        (ini.request_signature("key_unknown", digest_of("x")), 400, "bad_id"),
        (cluster.client("approver").request_signature(key["key_id"], digest_of("x")), 403, "missing_role"),
        (ini.create_key(threshold=2), 403, "missing_role"),
        (ini.request("POST", f"/v1/keys/{key['key_id']}/sign-requests", {"digest": "ab" * 32}), 400,
         "missing_request"),
        (admin.create_key(threshold=4), 400, "bad_threshold"),
        (admin.create_key(threshold=2, nodes=["node-1", "node-1"]), 400, "bad_nodes"),
        (admin.get_key(UNKNOWN["key_id"]), 404, "not_found"),
        (admin.operation(UNKNOWN["op_id"]), 404, "not_found"),
        (admin.get_sign_request(UNKNOWN["request_id"]), 404, "not_found"),
        (admin.get_key("key_unknown"), 400, "bad_id"),
        (admin.operation("op_unknown"), 400, "bad_id"),
        (admin.get_sign_request("req_unknown"), 400, "bad_id"),
        (ini.audit(), 403, "forbidden"),
        (admin.derive(key["key_id"], "m/0'/1"), 400, "bad_derivation_path"),
        (admin.address(key["key_id"], "eth", "m/1h"), 400, "bad_derivation_path"),
        (admin.address(key["key_id"], "nope"), 400, "bad_kind"),
        (admin.reshare(key["key_id"], 3, ["node-1", "node-2"]), 400, "bad_threshold"),
        (admin.reshare(key["key_id"], 2, ["node-1"]), 400, "bad_nodes"),
    ]
    for coro, status, code in cases:
        with pytest.raises(ApplianceAPIError) as ei:
            await coro
        assert (ei.value.status, ei.value.code) == (status, code), ei.value
        body_err = ei.value
        assert body_err.message
    assert await admin.list_keys() == before_keys
    assert await ini.pending_requests() == before_reqs
    # approving a request that no longer waits for approval is a state error
    done = await ini.sign(key["key_id"], digest_of("approve me"), approver=cluster.client("approver"))
    with pytest.raises(ApplianceAPIError) as ei:
        await cluster.client("approver2").approve(done["request_id"])
    assert (ei.value.status, ei.value.code) == (409, "not_pending")
    entries = await cluster.client("auditor").audit()
    assert any(e["action"] == "sign_request" and e["subject"] == done["request_id"] for e in entries)


async def test_openapi_matches_the_served_routes(cluster):
    from aiohttp import web  # noqa: F401

    from api.app import make_app
    from api.openapi import openapi_document
    from appliance.config import load_node_config
    from appliance.node import Node

    admin = cluster.client("admin", node=0)
    doc = await admin.openapi()
    assert doc["openapi"].startswith("3.")
    # every route the app serves is in the document, and nothing else
    node = Node(load_node_config(cluster.data_dirs[0] / "node.toml"))
    app = make_app(node)
    served = {(r.method, r.resource.canonical) for r in app.router.routes()}
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert served == documented
    assert doc == openapi_document(node) | {"servers": doc["servers"]}
    for required in ["/healthz", "/readyz", "/metrics", "/openapi.json", "/v1/keys", "/v1/keys/{key_id}",
                     "/v1/operations/{op_id}", "/v1/keys/{key_id}/sign-requests", "/v1/sign-requests",
                     "/v1/sign-requests/{request_id}/approvals", "/v1/sign-requests/{request_id}/rejections",
                     "/v1/sign-requests/{request_id}", "/v1/verify", "/v1/keys/{key_id}/derive",
                     "/v1/keys/{key_id}/address", "/v1/keys/{key_id}/refresh", "/v1/keys/{key_id}/reshare",
                     "/v1/audit"]:
        assert required in doc["paths"], required
    # every documented route exists on the live node (a router miss would be 404 no_route/405)
    roles = {"admin": admin, "approver": cluster.client("approver"), "auditor": cluster.client("auditor"),
             "initiator": cluster.client("initiator")}
    for path, ops in doc["paths"].items():
        concrete = path
        for name, value in UNKNOWN.items():
            concrete = concrete.replace("{" + name + "}", value)
        for method, op in ops.items():
            who = (op.get("x-roles") or ["admin"])[0]
            c = roles[who]
            body = {} if method == "post" else None
            ok = (op["responses"].get("200") or {}).get("content") or {}
            try:
                if path.startswith("/v1/peer/"):
                    await c.request(method.upper(), concrete, body, sign=False)
                elif path == "/metrics":
                    await c.request("GET", concrete, raw=True, sign=False)
                elif "application/json" not in ok and ok:  # a page, script or style: read raw
                    seen, check = [], c.observe

                    def observe(m, p, status, ctype, content, check=check, seen=seen):
                        seen.append((status, ctype))
                        if check is not None:
                            check(m, p, status, ctype, content)
                    c.observe = observe
                    try:
                        got = await c.request(method.upper(), concrete, body, raw=True, sign=False)
                    finally:
                        c.observe = check
                    assert seen == [(200, *ok)] and got, (path, seen)
                else:
                    await c.request(method.upper(), concrete, body, raw=path in ("/metrics", "/v1/audit"))
            except ApplianceAPIError as exc:
                assert exc.code not in ("no_route", "method_not_allowed"), (method, path, exc)
                if path.startswith("/v1/peer/"):
                    assert (exc.status, exc.code) == (403, "peer_not_pinned")
    # open routes need no signature; /metrics a signed user request (or the scraper's token)
    assert (await admin.healthz())["status"] == "ok"
    assert (await admin.readyz())["ready"] is True
    assert "appliance_sign_requests_completed_total" in await admin.metrics()


async def test_refresh_keeps_the_public_key(cluster):
    key = await _key(cluster)
    op = await cluster.client("admin", node=1).refresh(key["key_id"], timeout=120)
    assert op["status"] == "done" and op["result"]["public_key"] == key["public_key"]
    for i in range(3):
        k = await cluster.client("auditor", node=i).get_key(key["key_id"])
        assert k["epoch"] == 1 and k["public_key"] == key["public_key"]
    c = cluster.client("initiator", node=2)
    digest = digest_of("after refresh")
    done = await c.sign(key["key_id"], digest, timeout=60, approver=cluster.client("approver", node=2))
    check_signature(key["public_key"], digest, done["signature"])


async def test_reshare_to_a_new_committee(cluster):
    admin = cluster.client("admin", node=0)
    key = await admin.create_key(threshold=2)
    op = await admin.reshare(key["key_id"], 2, ["node-2", "node-3"], timeout=120)
    assert op["result"]["public_key"] == key["public_key"] and op["result"]["nodes"] == ["node-2", "node-3"]
    for i in (1, 2):
        k = await cluster.client("auditor", node=i).get_key(key["key_id"])
        assert k["nodes"] == ["node-2", "node-3"] and k["epoch"] == 1 and k["public_key"] == key["public_key"]
    # node-1 deleted its share once both new members had confirmed theirs
    with pytest.raises(ApplianceAPIError) as ei:
        await admin.get_key(key["key_id"])
    assert ei.value.status == 404
    c = cluster.client("initiator", node=1)
    digest = digest_of("after reshare")
    done = await c.sign(key["key_id"], digest, timeout=60, approver=cluster.client("approver", node=1))
    assert done["signers"] == ["node-2", "node-3"]
    check_signature(key["public_key"], digest, done["signature"])


def _aux_rows(cluster, i: int) -> dict[str, tuple]:
    """node ``i``'s pooled aux-info: aux_id -> (committee, bits, fingerprint, keys_bound)."""
    con = db(cluster, i)
    try:
        return {r[0]: r[1:] for r in con.execute("SELECT aux_id, committee, bits, fingerprint, keys_bound "
                                                 "FROM aux_info")}
    finally:
        con.close()


def _binding(cluster, i: int, key_id: str) -> str | None:
    con = db(cluster, i)
    try:
        row = con.execute("SELECT aux_id FROM aux_bindings WHERE key_id = ?", (key_id,)).fetchone()
        return row[0] if row else None
    finally:
        con.close()


async def test_keys_from_pooled_aux_info(cluster):
    """The pool fills in the background (the same aux-info on every node, sealed), a key takes
    one (DKG only: no aux phase in its job) and is bound to it on every node, and it signs."""
    rows = await eventually(lambda: all(_aux_rows(cluster, i) for i in range(3)) and _aux_rows(cluster, 0),
                            timeout=120, what="the aux-info pool to fill")
    aux_id, (committee, bits, fp, bound) = sorted(rows.items())[0]
    assert committee == "[0, 1, 2]" and bits == 2048
    for i in (1, 2):
        assert _aux_rows(cluster, i)[aux_id][:3] == (committee, bits, fp)
    key = await cluster.client("admin", node=0).create_key(threshold=2)
    STATE["pooled"] = (key, aux_id)
    for i in range(3):
        assert _binding(cluster, i, key["key_id"]) == aux_id
        assert _aux_rows(cluster, i)[aux_id][3] >= bound + 1
    text = await cluster.client("auditor", node=0).metrics()
    assert 'appliance_aux_pool_events_total{event="taken"}' in text
    c = cluster.client("initiator", node=1)
    digest = digest_of("a key from pooled aux-info")
    done = await c.sign(key["key_id"], digest, signers=["node-1", "node-2"], timeout=60,
                        approver=cluster.client("approver", node=1))
    check_signature(key["public_key"], digest, done["signature"])


async def test_nodes_stopped_and_restarted(cluster):
    key = await _key(cluster)
    c1 = cluster.client("initiator", node=0)
    await cluster.stop_node(2)
    # one node down: the other two sign
    digest = digest_of("one node down")
    done = await c1.sign(key["key_id"], digest, timeout=60, approver=cluster.client("approver", node=0))
    assert done["signers"] == ["node-1", "node-2"]
    check_signature(key["public_key"], digest, done["signature"])
    # two down: 503 naming them, and nothing is created
    await cluster.stop_node(1)
    before = await c1.pending_requests()
    with pytest.raises(ApplianceAPIError) as ei:
        await c1.request_signature(key["key_id"], digest_of("two nodes down"))
    assert ei.value.status == 503 and ei.value.code == "quorum_unreachable"
    assert sorted(ei.value.missing_nodes) == ["node-2", "node-3"]
    assert await c1.pending_requests() == before
    with pytest.raises(ApplianceAPIError) as ei:
        await cluster.client("admin", node=0).create_key(threshold=2)
    assert ei.value.status == 503 and sorted(ei.value.missing_nodes) == ["node-2", "node-3"]
    # restarted: their shares are unsealed from their stores and they sign together
    await asyncio.gather(cluster.start_node(1), cluster.start_node(2))
    c3 = cluster.client("initiator", node=2)
    digest = digest_of("after restart")
    done = await c3.sign(key["key_id"], digest, signers=["node-2", "node-3"], timeout=60,
                         approver=cluster.client("approver", node=2))
    check_signature(key["public_key"], digest, done["signature"])


async def test_pooled_aux_info_and_bindings_survive_a_restart(cluster):
    """After test_nodes_stopped_and_restarted (node-2 and node-3 stopped and started again):
    the pool and the key's binding are still there, and the pooled key signs through them."""
    key, aux_id = STATE["pooled"]
    for i in (1, 2):
        assert aux_id in _aux_rows(cluster, i) and _binding(cluster, i, key["key_id"]) == aux_id
    c = cluster.client("initiator", node=2)
    digest = digest_of("pooled key after restart")
    done = await c.sign(key["key_id"], digest, signers=["node-2", "node-3"], timeout=60,
                        approver=cluster.client("approver", node=2))
    check_signature(key["public_key"], digest, done["signature"])
