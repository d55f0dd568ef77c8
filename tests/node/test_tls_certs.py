"""Bring-your-own TLS: an operator's node certificate checked (exact messages) and used by
``appliance init --tls-cert/--tls-key/--tls-chain`` (a real SoftHSM2 token); the signed
certificate-update statement (appliance.policy.CertUpdate) verified like a policy update."""

from __future__ import annotations

import json

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from api.auth import generate_user_key
from appliance.cli import main
from appliance.errors import PolicyDenied
from appliance.policy import CertUpdate, Policy, PolicyError, default_policy, verify_cert_update
from appliance.tls import CertificateProblem, fingerprint_pem, make_node_certificate, operator_certificate
from tests.tls_ca import TestCA

HOSTS = ["node-1.example", "10.0.0.1"]


@pytest.fixture(scope="module")
def ca():
    return TestCA()


def test_an_operator_leaf_with_its_chain_is_pinned_as_the_leaf_and_served_with_the_chain(ca):
    inter = TestCA("Operator Intermediate", issuer=ca)
    cert, key = inter.issue("node-1", HOSTS)
    leaf, served = operator_certificate(cert, key, inter.pem, HOSTS)
    assert leaf == cert and served == cert + inter.pem


@pytest.mark.parametrize("case, message", [
    ("ca", "the TLS certificate is a CA certificate (basicConstraints CA:TRUE): a node certificate must be "
           "a leaf (CA:FALSE)"),
    ("server_only", "the TLS certificate's extended key usage must include serverAuth and clientAuth (nodes "
                    "present it to each other as clients too); missing: clientAuth"),
    ("no_eku", "the TLS certificate's extended key usage must include serverAuth and clientAuth (nodes "
               "present it to each other as clients too); missing: serverAuth, clientAuth"),
    ("other_key", "the TLS key does not match the certificate's public key"),
    ("san", "the TLS certificate's subjectAltName does not cover 10.0.0.1 (it names: node-1.example)"),
    ("chain", "chain certificate 1 (CN=Someone Else's CA) did not issue the TLS certificate"),
    ("not_pem", "the --tls-cert file holds no PEM certificate"),
])
def test_a_certificate_a_node_cannot_use_is_refused_with_what_is_wrong(ca, case, message):
    cert, key = ca.issue("node-1", HOSTS)
    chain = None
    if case == "ca":
        cert, key = ca.issue("node-1", HOSTS, ca=True)
    elif case == "server_only":
        cert, key = ca.issue("node-1", HOSTS, eku=(ExtendedKeyUsageOID.SERVER_AUTH,))
    elif case == "no_eku":
        cert, key = ca.issue("node-1", HOSTS, eku=())
    elif case == "other_key":
        key = ca.issue("node-1", HOSTS)[1]
    elif case == "san":
        cert, key = ca.issue("node-1", HOSTS[:1])
    elif case == "chain":
        chain = TestCA("Someone Else's CA").pem
    elif case == "not_pem":
        cert = b"not a certificate"
    with pytest.raises(CertificateProblem) as exc:
        operator_certificate(cert, key, chain, HOSTS)
    assert str(exc.value) == message


def test_init_with_an_operator_certificate(tmp_path, ca, capsys):
    cert, key = ca.issue("node-1", ["127.0.0.1", "node-1.example"])
    (tmp_path / "n.crt").write_bytes(cert)
    (tmp_path / "n.key").write_bytes(key)
    (tmp_path / "ca.crt").write_bytes(ca.pem)
    args = ["init", "--dir", str(tmp_path / "n1"), "--node-id", "node-1", "--listen", "127.0.0.1:9443",
            "--host", "node-1.example", "--paillier-bits", "2048",
            "--tls-cert", str(tmp_path / "n.crt"), "--tls-key", str(tmp_path / "n.key"),
            "--tls-chain", str(tmp_path / "ca.crt"), "--softhsm", str(tmp_path / "n1" / "hsm")]
    assert main(args) == 0
    info = json.loads((tmp_path / "n1" / "node-info.json").read_text())
    assert info["tls_cert"] == cert.decode()  # what peers pin: the leaf
    assert (tmp_path / "n1" / "tls" / "node.crt").read_bytes() == cert + ca.pem  # served with its chain
    assert (tmp_path / "n1" / "tls" / "node.key").read_bytes() == key

    # a certificate that does not cover the URL's host: refused before anything is made
    other, other_key = ca.issue("node-2", ["node-2.example"])
    (tmp_path / "n.crt").write_bytes(other)
    (tmp_path / "n.key").write_bytes(other_key)
    capsys.readouterr()
    assert main([*args[:2], str(tmp_path / "n2"), *args[3:-1], str(tmp_path / "n2" / "hsm")]) == 2
    assert capsys.readouterr().err == ("error: bad_config: the TLS certificate's subjectAltName does not cover 127.0.0.1 "
                                       "(it names: node-2.example)\n")
    assert not (tmp_path / "n2" / "hsm").exists()
    assert main(["init", "--dir", str(tmp_path / "n3"), "--node-id", "node-3", "--tls-cert",
                 str(tmp_path / "n.crt"), "--softhsm", str(tmp_path / "n3" / "hsm")]) == 2
    assert capsys.readouterr().err == "error: bad_config: --tls-cert and --tls-key go together\n"


# ------------------------------------------------------------------------------ the update statement


@pytest.fixture(scope="module")
def admins():
    # an initiator too: a policy whose signing rule nobody can meet does not load
    keys = {u: generate_user_key("ed25519") for u in ("admin", "admin2", "approver", "initiator")}
    base = default_policy("local", {u: pub.decode() for u, (_, pub) in keys.items()},
                          roles={"admin": ["admin"], "admin2": ["admin"], "approver": ["approver"],
                                 "initiator": ["initiator"]}).canonical()
    base["policy_change"]["quorum"] = 2
    return Policy.from_mapping(base), {u: priv for u, (priv, _) in keys.items()}


def _update(policy, version=1, previous="00" * 32):
    cert, _ = make_node_certificate("node-2", ["127.0.0.1"])
    return CertUpdate(policy.cluster_id, policy.hash, version, "node-2", previous, cert.decode())


@pytest.mark.parametrize("case, code", [
    ("good", None), ("one_admin", "missing_quorum"), ("approver", "missing_role"),
    ("forged", "bad_signature"), ("stale", "stale_cert_update"), ("replaced", "cert_mismatch"),
    ("other_policy", "policy_mismatch"), ("twice", "duplicate_approver"),
])
def test_a_certificate_update_needs_the_policy_change_quorum_and_the_next_version(admins, case, code):
    policy, keys = admins
    upd = _update(policy, version=5 if case == "stale" else 1, previous="11" * 32 if case == "replaced" else "00" * 32)
    signers = {"one_admin": ["admin"], "approver": ["admin", "approver"], "twice": ["admin", "admin"]}.get(
        case, ["admin", "admin2"])
    for u in signers:
        upd = upd.signed_by(u, keys[u])
    if case == "forged":  # admin2's signature over another certificate
        other = _update(policy).signed_by("admin2", keys["admin2"])
        upd = CertUpdate(**{**upd.__dict__, "signatures": (upd.signatures[0], other.signatures[0])})
    if case == "other_policy":
        upd = CertUpdate(**{**upd.__dict__, "policy_hash": "22" * 32})
    upd = CertUpdate.from_json(json.loads(json.dumps(upd.to_json())))  # as it travels
    if code is None:
        verify_cert_update(policy, 0, "00" * 32, upd)
        assert upd.tls_cert_sha256 == fingerprint_pem(upd.tls_cert)
        assert x509.load_pem_x509_certificate(upd.tls_cert.encode())
        return
    with pytest.raises(PolicyDenied) as exc:
        verify_cert_update(policy, 0, "00" * 32, upd)
    assert exc.value.code == code


def test_an_update_whose_certificate_does_not_parse_is_refused_as_malformed(admins):
    """Found by the API fuzzer: a PEM with the right marker but no certificate inside was a 500
    (ValueError from the fingerprint) at POST /v1/cluster/tls-certs; now PolicyError, which the
    service answers as 400 bad_cert_update."""
    policy, _ = admins
    body = _update(policy).to_json()
    body["tls_cert"] = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    with pytest.raises(PolicyError, match="tls_cert does not parse as an X.509 certificate"):
        CertUpdate.from_json(body)
