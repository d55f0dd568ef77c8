"""Client authentication (RFC 9421 signatures) and peer authentication (pinned mutual TLS),
against real node processes; plus the signature helpers on their own."""

from __future__ import annotations

import datetime
import json
import ssl

import aiohttp
import pytest
from yarl import URL

from api.auth import AuthError, RequestVerifier, generate_user_key, load_private_key, load_public_key, sign_request
from appliance.tls import client_context, make_node_certificate, write_private
from tests.cluster_fixtures import cluster_fixture

# node-1 lingers 0.5 s (not aiohttp's 10 s) after a 401 sent before the body was read, so that
# test_unknown_key_id_gets_401_before_the_body_is_read does not wait out 10 s for the close
cluster = cluster_fixture(nodes=2, threshold=2, node_extra={0: {"http": {"linger_s": 0.5}}})


# -- the helpers alone (no cluster) ------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ed25519", "p256"])
def test_sign_and_verify_request(kind):
    priv, pub = generate_user_key(kind)
    key = load_private_key(priv)
    v = RequestVerifier({"u": load_public_key(pub)}, authority="n:1")
    body = b'{"digest":"00"}'
    h = sign_request("POST", "https://n:1/v1/keys/k/sign-requests?x=1", body, "u", key)
    # the verifier checks its own authority, not the one the request's URL (Host) claims
    assert v.verify("POST", "https://other:2/v1/keys/k/sign-requests?x=1", list(h.items()), body) == "u"
    with pytest.raises(AuthError, match="nonce"):
        v.verify("POST", "https://n:1/v1/keys/k/sign-requests?x=1", list(h.items()), body)
    for method, url, b in [("POST", "https://n/v1/keys/k/sign-requests?x=1", b'{"digest":"01"}'),
                           ("GET", "https://n/v1/keys/k/sign-requests?x=1", body),
                           ("POST", "https://n/v1/keys/j/sign-requests?x=1", body),
                           ("POST", "https://n/v1/keys/k/sign-requests?x=2", body)]:
        h = sign_request("POST", "https://n:1/v1/keys/k/sign-requests?x=1", body, "u", key)
        with pytest.raises(AuthError):
            v.verify(method, url, list(h.items()), b)


def test_algorithm_comes_from_the_users_key():
    # a P-256 user's request signed with some Ed25519 key (claiming alg ed25519) is refused
    _, pub = generate_user_key("p256")
    other, _ = generate_user_key("ed25519")
    v = RequestVerifier({"u": load_public_key(pub)}, authority="n")
    h = sign_request("GET", "https://n/v1/keys", b"", "u", load_private_key(other))
    with pytest.raises(AuthError):
        v.verify("GET", "https://n/v1/keys", list(h.items()), b"")


def test_a_request_signed_for_one_authority_is_refused_by_another():
    """Issue 12 item 6: @authority is covered and compared with the verifier's own."""
    from api.auth import authority_of

    priv, pub = generate_user_key("ed25519")
    key = load_private_key(priv)
    h = sign_request("GET", "https://127.0.0.1:8441/v1/keys", b"", "u", key)
    assert '"@authority"' in h["Signature-Input"]
    node2 = RequestVerifier({"u": load_public_key(pub)}, authority=authority_of("https://127.0.0.1:8442"))
    with pytest.raises(AuthError, match="signature rejected"):
        node2.verify("GET", "https://127.0.0.1:8442/v1/keys", list(h.items()), b"")
    node1 = RequestVerifier({"u": load_public_key(pub)}, authority=authority_of("https://127.0.0.1:8441/"))
    assert node1.verify("GET", "https://127.0.0.1:8442/v1/keys", list(h.items()), b"") == "u"
    # a signature that leaves @authority out is refused before anything else is looked at
    from http_message_signatures import HTTPMessageSigner, algorithms

    from appliance_client import httpsig

    signer = HTTPMessageSigner(signature_algorithm=algorithms.ED25519,
                               key_resolver=httpsig.OneKey("u", private=key))
    msg = httpsig.Message("GET", "https://127.0.0.1:8441/v1/keys", httpsig.Headers([]))
    signer.sign(msg, key_id="u", label="sig1", covered_component_ids=("@method", "@path", "@query",
                                                                         "content-digest"),
                body=b"", created=datetime.datetime.now(datetime.timezone.utc), nonce="n" * 16)
    with pytest.raises(AuthError, match="must cover @authority"):
        node1.precheck(list(msg.headers.items()))


def test_nonces_are_forgotten_only_outside_the_window(tmp_path):
    """The durable ledger keeps a nonce across a reopen (a restart), and evicts only rows whose
    created is before ``forget_before`` (never one that could still be accepted)."""
    from appliance.storage import NonceLedger

    t = [0.0]
    ledger = NonceLedger(tmp_path / "node.db", clock=lambda: t[0])
    assert ledger.check_and_add("u", "nonce-a", 1000, forget_before=0)
    assert not ledger.check_and_add("u", "nonce-a", 1000, forget_before=0)
    assert ledger.check_and_add("v", "nonce-a", 1000, forget_before=0)  # per key id
    ledger.close()
    ledger = NonceLedger(tmp_path / "node.db", clock=lambda: t[0])
    assert not ledger.check_and_add("u", "nonce-a", 1000, forget_before=0)  # survived the reopen
    t[0] += 5  # eviction runs (at most once a second); created 1000 is not before 1000
    assert ledger.check_and_add("u", "nonce-b", 1500, forget_before=1000)
    assert not ledger.check_and_add("u", "nonce-a", 1000, forget_before=1000)
    t[0] += 5
    assert ledger.check_and_add("u", "nonce-c", 1500, forget_before=1001)
    assert len(ledger) == 2  # nonce-a (both key ids) went, nonce-b and nonce-c stay
    assert not ledger.check_and_add("u", "nonce-b", 1500, forget_before=1001)
    ledger.close()


def test_precheck_refuses_unknown_key_ids_without_a_body():
    _, pub = generate_user_key("ed25519")
    other, _ = generate_user_key("ed25519")
    v = RequestVerifier({"u": load_public_key(pub)}, authority="n")
    h = sign_request("POST", "https://n/v1/keys", b"x" * 100, "mallory", load_private_key(other))
    with pytest.raises(AuthError, match="signature rejected"):
        v.precheck(list(h.items()))


# -- against a running node ----------------------------------------------------------------------



async def _raw(cluster, method: str, path: str, body: bytes = b"", headers: dict | None = None,
               node: int = 0) -> tuple[int, dict]:
    ctx = client_context(cluster.server_cert(node))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
        async with s.request(method, URL(cluster.urls[node] + path, encoded=True), data=body or None,
                             headers=headers or {}) as r:
            text = await r.read()
            return r.status, (json.loads(text) if text and r.content_type == "application/json" else {})


def _signed(cluster, user: str, method: str, path: str, body: bytes, **kw) -> dict:
    key = load_private_key(cluster.user_keys[user])
    return sign_request(method, cluster.urls[0] + path, body, user, key, **kw)


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.xdist_group("api-auth")
@pytest.mark.hsm
async def test_unauthenticated_and_forged_requests_get_401(cluster):
    path = "/v1/keys"
    ok_headers = _signed(cluster, "admin", "GET", path, b"")
    status, body = await _raw(cluster, "GET", path, headers=ok_headers)
    assert status == 200 and "keys" in body
    # no signature
    status, body = await _raw(cluster, "GET", path)
    assert status == 401 and body["error"]["code"] == "unauthenticated"
    # a reused nonce (the very same signed request again)
    status, body = await _raw(cluster, "GET", path, headers=ok_headers)
    assert status == 401 and "nonce" in body["error"]["message"]
    # bad signature: signed by another key under the admin's key id
    stranger, _ = generate_user_key("ed25519")
    h = sign_request("GET", cluster.urls[0] + path, b"", "admin", load_private_key(stranger))
    assert (await _raw(cluster, "GET", path, headers=h))[0] == 401
    # a key id nobody has
    h = sign_request("GET", cluster.urls[0] + path, b"", "mallory", load_private_key(stranger))
    assert (await _raw(cluster, "GET", path, headers=h))[0] == 401
    # body changed after signing
    body_ok = json.dumps({"threshold": 2}).encode()
    h = _signed(cluster, "admin", "POST", path, body_ok)
    h["Content-Type"] = "application/json"
    status, body = await _raw(cluster, "POST", path, json.dumps({"threshold": 1}).encode(), headers=h)
    assert status == 401
    # old timestamp
    old = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=30)
    h = _signed(cluster, "admin", "GET", path, b"", created=old)
    status, body = await _raw(cluster, "GET", path, headers=h)
    assert status == 401 and "old" in body["error"]["message"]
    # created in the future
    future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=30)
    assert (await _raw(cluster, "GET", path, headers=_signed(cluster, "admin", "GET", path, b"",
                                                              created=future)))[0] == 401
    # signed for another path
    h = _signed(cluster, "admin", "GET", "/v1/sign-requests", b"")
    assert (await _raw(cluster, "GET", path, headers=h))[0] == 401
    # a refused request changed nothing: still no key
    h = _signed(cluster, "admin", "GET", path, b"")
    status, body = await _raw(cluster, "GET", path, headers=h)
    assert status == 200 and body["keys"] == []


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.xdist_group("api-auth")
@pytest.mark.hsm
async def test_open_routes(cluster):
    for path in ("/healthz", "/readyz"):
        status, _ = await _raw(cluster, "GET", path)
        assert status == 200, path
    # /metrics is not open by default (the scraper's token, see tests/cluster/test_node_hardening.py)
    assert await _raw(cluster, "GET", "/metrics") == (401, {"error": {
        "code": "unauthenticated", "message": "metrics need the scraper's credentials"}})
    # the OpenAPI document needs no authentication (a DESIGN.md contract: client generators read it)
    status, body = await _raw(cluster, "GET", "/openapi.json")
    assert status == 200 and "/v1/keys" in body["paths"]
    assert "security" not in body["paths"]["/openapi.json"]["get"]


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.xdist_group("api-auth")
@pytest.mark.hsm
async def test_peer_routes_need_a_pinned_certificate(cluster, tmp_path):
    url = cluster.urls[1] + "/v1/peer/health"
    # no client certificate
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_context(cluster.server_cert(1)))) as s:
        async with s.get(url) as r:
            assert r.status == 403 and (await r.json())["error"]["code"] == "peer_not_pinned"
    # a certificate that is not pinned (same name as a real node)
    cert, key = make_node_certificate("node-1", ["127.0.0.1"])
    (tmp_path / "c.pem").write_bytes(cert)
    write_private(tmp_path / "k.pem", key)
    ctx = client_context(cluster.server_cert(1))
    ctx.load_cert_chain(str(tmp_path / "c.pem"), str(tmp_path / "k.pem"))
    refused = False
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
            async with s.get(url) as r:
                refused = r.status == 403
    except (aiohttp.ClientError, ssl.SSLError):
        refused = True  # the handshake itself fails: the certificate is not among the pins
    assert refused
    # a user's signed request on a peer route does not help either
    h = _signed(cluster, "admin", "GET", "/v1/peer/health", b"")
    assert (await _raw(cluster, "GET", "/v1/peer/health", headers=h, node=1))[0] == 403
    # the pinned certificate of node-1 is accepted
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=cluster.peer_ssl_context(0, 1))) as s:
        async with s.get(url) as r:
            assert r.status == 200 and (await r.json())["node_id"] == "node-2"
        # and a peer cannot speak for another node: a batch claiming another sender is refused
        import cbor2

        batch = cbor2.dumps({"job": "job_x", "from": 1, "frames": []})
        async with s.post(cluster.urls[1] + "/v1/peer/jobs/job_x/messages", data=batch) as r:
            assert r.status == 400


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.xdist_group("api-auth")
@pytest.mark.hsm
async def test_unknown_key_id_gets_401_before_the_body_is_read(cluster):
    """Issue 12 item 5b: the headers of a 2 MiB POST under an unknown key id, and 16 bytes of
    its body: the 401 comes back without the rest being sent (and the connection is closed)."""
    import asyncio

    stranger, _ = generate_user_key("ed25519")
    path = "/v1/keys"
    length = (2 << 20) - 1
    h = sign_request("POST", cluster.urls[0] + path, b"\0" * length, "mallory", load_private_key(stranger))
    host = URL(cluster.urls[0])
    head = [f"POST {path} HTTP/1.1", f"Host: {host.host}:{host.port}", "Content-Type: application/json",
            f"Content-Length: {length}"] + [f"{k}: {v}" for k, v in h.items()]
    reader, writer = await asyncio.open_connection(host.host, host.port, ssl=client_context(cluster.server_cert(0)),
                                                   server_hostname="127.0.0.1")
    try:
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + b"\0" * 16)
        await writer.drain()
        # the answer must come while 2 MiB are still unsent (a bound on waiting, not a sleep)
        response = await asyncio.wait_for(reader.read(65536), timeout=20)
        assert response.startswith(b"HTTP/1.1 401"), response[:200]
        body = json.loads(response.split(b"\r\n\r\n", 1)[1])
        assert body["error"]["code"] == "unauthenticated"
        assert await asyncio.wait_for(reader.read(), timeout=20) == b""  # closed by the node
    finally:
        writer.close()


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.xdist_group("api-auth")
@pytest.mark.hsm
async def test_a_request_signed_for_node_1_is_refused_by_node_2(cluster):
    """Issue 12 item 6: replayed to another node (with node-1's Host header even), a signed
    request gets the same 401 as a bad signature; on node-1 it is accepted once."""
    path = "/v1/keys"
    h = _signed(cluster, "admin", "GET", path, b"")  # signed for node-1's URL
    status, body = await _raw(cluster, "GET", path, headers=h, node=1)
    assert (status, body["error"]["code"]) == (401, "unauthenticated")
    assert body["error"]["message"].startswith("signature rejected")
    host = URL(cluster.urls[0])
    status, body = await _raw(cluster, "GET", path, headers={**h, "Host": f"{host.host}:{host.port}"}, node=1)
    assert (status, body["error"]["code"]) == (401, "unauthenticated")
    stranger, _ = generate_user_key("ed25519")  # what a bad signature gets: the same code
    bad = sign_request("GET", cluster.urls[1] + path, b"", "admin", load_private_key(stranger))
    assert (await _raw(cluster, "GET", path, headers=bad, node=1))[1]["error"]["code"] == "unauthenticated"
    assert (await _raw(cluster, "GET", path, headers=h, node=0))[0] == 200


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.xdist_group("api-auth")
@pytest.mark.hsm
async def test_a_replay_after_a_restart_is_refused(cluster):
    """Issue 12 item 6: the node keeps used nonces in its database, not in memory only."""
    path = "/v1/keys"
    h = _signed(cluster, "admin", "GET", path, b"")
    assert (await _raw(cluster, "GET", path, headers=h))[0] == 200
    await cluster.stop_node(0)
    await cluster.start_node(0)
    status, body = await _raw(cluster, "GET", path, headers=h)
    assert (status, body["error"]["code"]) == (401, "unauthenticated")
    assert "nonce already used" in body["error"]["message"]
    fresh = _signed(cluster, "admin", "GET", path, b"")
    assert (await _raw(cluster, "GET", path, headers=fresh))[0] == 200
