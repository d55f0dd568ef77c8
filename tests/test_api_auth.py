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
from api.tls import client_context, make_node_certificate, write_private
from tests.cluster_fixtures import cluster_fixture

cluster = cluster_fixture(nodes=2, threshold=2)


# -- the helpers alone (no cluster) ------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ed25519", "p256"])
def test_sign_and_verify_request(kind):
    priv, pub = generate_user_key(kind)
    key = load_private_key(priv)
    v = RequestVerifier({"u": load_public_key(pub)})
    body = b'{"digest":"00"}'
    h = sign_request("POST", "https://n:1/v1/keys/k/sign-requests?x=1", body, "u", key)
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
    v = RequestVerifier({"u": load_public_key(pub)})
    h = sign_request("GET", "https://n/v1/keys", b"", "u", load_private_key(other))
    with pytest.raises(AuthError):
        v.verify("GET", "https://n/v1/keys", list(h.items()), b"")


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
    # /metrics is not open by default (the scraper's token, see tests/test_node_hardening.py)
    assert await _raw(cluster, "GET", "/metrics") == (401, {"error": {
        "code": "unauthenticated", "message": "metrics need the scraper's credentials"}})
    status, body = await _raw(cluster, "GET", "/openapi.json")
    assert status == 401


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
