"""Node hardening (issue 12, items 8 and 9): a node's state is its user's only (directories
0700, files 0600) after ``appliance init`` and after serving and signing, whatever the umask
it was started with; node certificates are leaf certificates; an outsider learns nothing
from the 401 about which user ids exist; ``/metrics`` needs credentials by default."""

from __future__ import annotations

import datetime
import os
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from yarl import URL

from api.auth import generate_user_key, load_private_key, sign_request
from appliance.tls import client_context, make_node_certificate, server_context, write_private
from appliance.fsmodes import mode_violations, tighten_tree
from appliance.testing import LocalCluster
from tests.cluster_fixtures import TEST_ONLY_PRIMES, check_signature, cluster_marks, digest_of

ROOT = Path(__file__).resolve().parents[2]
PERMISSIVE_UMASK = 0o022  # an operator's usual shell


def _appliance(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("SOFTHSM2_CONF", None)
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], capture_output=True, text=True,
                          timeout=120, env=env, cwd=ROOT, umask=PERMISSIVE_UMASK)


# -- item 8: file modes ----------------------------------------------------------------------


@pytest.mark.hsm
def test_init_leaves_only_private_files(tmp_path):
    d = tmp_path / "state" / "n1"
    p = _appliance("init", "--dir", str(d), "--node-id", "node-1", "--listen", "127.0.0.1:8441",
                   "--paillier-bits", "2048", "--softhsm", str(d / "hsm"))
    assert p.returncode == 0, p.stderr
    for item in ("node.toml", "node-info.json", "tls/node.key", "tls/node.crt", "hsm/softhsm2.conf",
                 "hsm/node-1.pin", "hsm/tokens"):
        assert (d / item).exists(), item
    assert any((d / "hsm" / "tokens").rglob("*.object"))
    assert mode_violations(tmp_path / "state") == []


def test_tighten_tree_fixes_state_of_an_older_release(tmp_path):
    (tmp_path / "tls").mkdir(mode=0o755)
    (tmp_path / "node.db").write_bytes(b"x")
    (tmp_path / "tls" / "node.key").write_bytes(b"k")
    os.chmod(tmp_path, 0o755)  # explicit modes: the process umask may be 077 already
    os.chmod(tmp_path / "tls", 0o755)
    os.chmod(tmp_path / "node.db", 0o644)
    os.chmod(tmp_path / "tls" / "node.key", 0o640)
    assert mode_violations(tmp_path) == [(".", "0o755"), ("node.db", "0o644"), ("tls", "0o755"),
                                         ("tls/node.key", "0o640")]
    assert len(tighten_tree(tmp_path)) == 4
    assert mode_violations(tmp_path) == []


# -- item 9: leaf certificates -----------------------------------------------------------------


def test_node_certificate_is_a_leaf():
    cert = x509.load_pem_x509_certificate(make_node_certificate("node-1", ["127.0.0.1", "node-1"])[0])
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False and bc.value.path_length is None
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature
    assert not (ku.value.key_cert_sign or ku.value.crl_sign or ku.value.key_agreement
                or ku.value.key_encipherment or ku.value.content_commitment)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert cert.issuer == cert.subject  # self-signed, pinned as itself
    cert.public_key().verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))


def _issued_by(issuer_cert_pem: bytes, issuer_key_pem: bytes) -> tuple[bytes, bytes]:
    """A certificate for 127.0.0.1 signed with a node's TLS key (as a thief of that key would)."""
    issuer = x509.load_pem_x509_certificate(issuer_cert_pem)
    issuer_key = serialization.load_pem_private_key(issuer_key_pem, None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "impostor")]))
            .issuer_name(issuer.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(issuer_key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> str:
    """TLS over loopback; "ok" or the client's verification error."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve_one() -> None:
            conn, _ = listener.accept()
            try:
                with server_ctx.wrap_socket(conn, server_side=True) as s:
                    s.recv(1)
            except (ssl.SSLError, OSError):
                pass

        t = threading.Thread(target=serve_one)
        t.start()
        try:
            with client_ctx.wrap_socket(socket.create_connection(("127.0.0.1", port))) as c:
                c.sendall(b"x")
            return "ok"
        except ssl.SSLCertVerificationError as exc:
            return exc.verify_message
        finally:
            t.join(10)


def test_pinning_accepts_the_leaf_and_nothing_it_signs(tmp_path):
    cert, key = make_node_certificate("node-1", ["127.0.0.1"])
    (tmp_path / "node.crt").write_bytes(cert)
    write_private(tmp_path / "node.key", key)
    pinned = client_context(cert.decode())
    assert _handshake(server_context(tmp_path / "node.crt", tmp_path / "node.key", []), pinned) == "ok"
    # a certificate made with the node's key, presented with the node's certificate as its chain
    impostor, impostor_key = _issued_by(cert, key)
    (tmp_path / "impostor.crt").write_bytes(impostor + cert)
    write_private(tmp_path / "impostor.key", impostor_key)
    result = _handshake(server_context(tmp_path / "impostor.crt", tmp_path / "impostor.key", []), pinned)
    assert result == "invalid CA certificate"


# -- item 9: an outsider cannot tell which user ids exist ---------------------------------------


def test_verifier_answers_unknown_and_known_key_ids_alike():
    from api.auth import AuthError, RequestVerifier, load_public_key

    v = RequestVerifier({"alice": load_public_key(generate_user_key("ed25519")[1])}, authority="n:1")
    stranger = load_private_key(generate_user_key("ed25519")[0])
    url = "https://n:1/v1/keys"
    old = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=30)
    for created, message in ((None, "signature rejected"), (old, "signature is too old")):
        for key_id in ("alice", "mallory"):
            h = sign_request("GET", url, b"", key_id, stranger, created=created)
            with pytest.raises(AuthError) as exc:
                v.verify("GET", url, list(h.items()), b"")
            assert exc.value.message == message, (key_id, created)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster():
    old = os.umask(PERMISSIVE_UMASK)  # the node processes must not depend on their parent's umask
    try:
        c = LocalCluster(nodes=2, threshold=2, paillier_bits=2048, prime_file=TEST_ONLY_PRIMES,
                         round_timeout=20.0, job_timeout=120.0)
        await c.__aenter__()
    finally:
        os.umask(old)
    try:
        yield c
    finally:
        await c.close()


def on_cluster(test):
    for mark in cluster_marks("node-hardening"):
        test = mark(test)
    return test


@on_cluster
async def test_state_is_private_after_serving_and_signing(cluster):
    key = await cluster.client("admin").create_key(threshold=2)
    digest = digest_of("hardening")
    req = await cluster.client("initiator").request_signature(key["key_id"], digest)
    await cluster.client("approver", node=1).approve(req["request_id"])
    done = await cluster.client("initiator").wait_signature(req["request_id"], timeout=120)
    check_signature(key["public_key"], digest, done["signature"])
    for d in cluster.data_dirs:  # while the nodes run: the WAL files are there
        names = {str(p.relative_to(d)) for p in d.rglob("*")}
        assert {"node.db", "node.db-wal", "node.log", "node.toml",
                "cluster.toml", "policy.toml", "tls/node.key", "hsm/softhsm2.conf"} <= names, names
        assert not any(n.startswith("audit.db") for n in names), names  # the audit log is in node.db
        assert any(n.startswith("hsm/tokens/") and n.endswith(".object") for n in names)
        assert mode_violations(d) == [], d
    assert mode_violations(cluster.base_dir) == []  # users/ (their private keys) too


async def _raw(cluster, method: str, path: str, headers: dict | None = None, body: bytes = b"",
               node: int = 0) -> tuple[int, bytes]:
    ctx = client_context(cluster.server_cert(node))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
        async with s.request(method, URL(cluster.urls[node] + path, encoded=True), data=body or None,
                             headers=headers or {}) as r:
            return r.status, await r.read()


@on_cluster
async def test_unknown_key_id_and_bad_signature_are_answered_alike(cluster):
    stranger = load_private_key(generate_user_key("ed25519")[0])
    answers = []
    for key_id in ("mallory", "admin"):  # nobody's id; a real user's id, signed with another key
        for method, path, body in (("GET", "/v1/keys", b""),
                                   ("POST", "/v1/keys", b'{"threshold": 2}')):
            h = sign_request(method, cluster.urls[0] + path, body, key_id, stranger)
            answers.append((key_id, path, *await _raw(cluster, method, path, h, body)))
    expected = b'{"error":{"code":"unauthenticated","message":"signature rejected"}}'
    assert [(status, text) for _, _, status, text in answers] == [(401, expected)] * 4, answers
    # a body changed after signing is answered alike too
    h = sign_request("POST", cluster.urls[0] + "/v1/keys", b'{"threshold": 2}', "admin",
                     load_private_key(cluster.user_keys["admin"]))
    assert await _raw(cluster, "POST", "/v1/keys", h, b'{"threshold": 1}') == (401, expected)


# -- item 9: /metrics authenticated by default -------------------------------------------------


def _node_toml(tmp_path: Path, text: str):
    from appliance.config import load_node_config

    (tmp_path / "cluster.toml").write_text(
        '[cluster]\nid = "c"\n[[nodes]]\nid = "node-1"\nindex = 0\nurl = "https://127.0.0.1:1"\n'
        'tls_cert = "x"\nidentity_key = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"\n'
        'transport_key = "046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c2964fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5"\n')
    (tmp_path / "node.toml").write_text('[node]\nid = "node-1"\n' + text + '\n[hsm]\ntoken_label = "node-1"\n'
                                         'pin_env = "NODE_PIN"\n')
    return load_node_config(tmp_path / "node.toml")


def test_metrics_config_is_authenticated_unless_explicitly_open(tmp_path):
    from appliance.config import ConfigError

    cfg = _node_toml(tmp_path, "metrics_open = true\n")  # an older release's node.toml
    assert (cfg.metrics.auth, cfg.metrics.legacy_open) == ("bearer", True)
    assert cfg.metrics.bearer_token_file == tmp_path / "metrics.token"
    assert _node_toml(tmp_path, '[metrics]\nauth = "none"\n').metrics.auth == "none"
    for bad, message in (('[metrics]\nauth = "open"\n',
                          '[metrics] auth: must be one of bearer, mtls, none, got str "open"'),
                         ('[metrics]\nauth = "mtls"\n',
                          '[metrics] client_certs: auth = "mtls" needs the scraper\'s certificates')):
        with pytest.raises(ConfigError) as e:
            _node_toml(tmp_path, bad)
        assert str(e.value) == f"{tmp_path / 'node.toml'}: {message}"


def test_metrics_auth_checks_the_exact_bearer_grammar(tmp_path):
    from api.metrics_auth import MetricsAuth
    from appliance.config import ConfigError, MetricsConfig

    missing = MetricsAuth.from_config(MetricsConfig(bearer_token_file=tmp_path / "none.token"))
    assert missing.problem and not missing.allows("Bearer " + "a" * 43, None)
    (tmp_path / "short.token").write_text("abc\n")
    with pytest.raises(ConfigError, match="32 to 512 characters"):
        MetricsAuth.from_config(MetricsConfig(bearer_token_file=tmp_path / "short.token"))
    token = "T0k-en_" + "x" * 36
    (tmp_path / "m.token").write_text(token + "\n")
    auth = MetricsAuth.from_config(MetricsConfig(bearer_token_file=tmp_path / "m.token"))
    assert auth.allows(f"Bearer {token}", None) and auth.allows(f"bearer {token}", None)
    for bad in (None, token, f"Bearer {token}\n", f"Bearer {token}=x", f"Bearer  {token}x", "Bearer " + "x" * 2000):
        assert not auth.allows(bad, None), bad


async def _scrape(cluster, node: int, headers: dict | None = None, cert: tuple[Path, Path] | None = None):
    ctx = client_context(cluster.server_cert(node))
    if cert is not None:
        ctx.load_cert_chain(*cert)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
        async with s.get(cluster.urls[node] + "/metrics", headers=headers or {}) as r:
            return r.status, await r.read(), r.headers.get("WWW-Authenticate")


REFUSED = b'{"error":{"code":"unauthenticated","message":"metrics need the scraper\'s credentials"}}'


@on_cluster
async def test_metrics_need_the_scrapers_bearer_token(cluster):
    from tests.cluster.test_metrics import promtool_path

    assert await _scrape(cluster, 0) == (401, REFUSED, 'Bearer realm="appliance-metrics"')
    token0, token1 = cluster.metrics_token(0), cluster.metrics_token(1)
    assert token0 != token1 and len(token0) >= 32
    for bad in (f"Bearer {token1}", f"Bearer {token0[:-1]}", f"Basic {token0}", token0, f"Bearer {token0} x"):
        assert (await _scrape(cluster, 0, {"Authorization": bad}))[:2] == (401, REFUSED), bad
    status, text, _ = await _scrape(cluster, 0, {"Authorization": f"Bearer {token0}"})
    assert status == 200 and b"appliance_sign_requests_completed_total" in text
    assert "appliance_build_info" in await cluster.metrics(1)
    # a user's signed request still reads them (ApplianceClient.metrics)
    assert "appliance_sign_requests_completed_total" in await cluster.client("auditor").metrics()
    promtool = promtool_path()
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=60, check=False)
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), (r.stdout + r.stderr).decode()


@on_cluster
async def test_metrics_over_mtls_and_explicitly_open(cluster, tmp_path):
    scraper = make_node_certificate("prometheus", ["localhost"])
    (tmp_path / "scraper.crt").write_bytes(scraper[0])
    write_private(tmp_path / "scraper.key", scraper[1])
    await cluster.stop_node(1)
    cluster.configure_node(1, "metrics", auth="mtls", client_certs=[str(tmp_path / "scraper.crt")])
    await cluster.start_node(1)
    status, text, _ = await _scrape(cluster, 1, cert=(tmp_path / "scraper.crt", tmp_path / "scraper.key"))
    assert status == 200 and b"appliance_build_info" in text
    node0 = (cluster.data_dirs[0] / "tls" / "node.crt", cluster.data_dirs[0] / "tls" / "node.key")
    for headers, cert in (({}, None), ({}, node0),  # a pinned node is no scraper
                          ({"Authorization": f"Bearer {cluster.metrics_token(1)}"}, None)):
        assert (await _scrape(cluster, 1, headers, cert))[:2] == (401, REFUSED)
    await cluster.stop_node(1)
    cluster.configure_node(1, "metrics", auth="none")
    await cluster.start_node(1)
    assert (await _scrape(cluster, 1))[0] == 200
