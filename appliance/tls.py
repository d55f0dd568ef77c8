"""TLS for the appliance: node certificates, pinned mutual TLS between nodes.

Each node has its own self-signed leaf certificate (P-256, made by ``appliance init`` with
``cryptography``: ``CA:FALSE``, key usage digitalSignature, extended key usage serverAuth and
clientAuth). The cluster configuration pins every node's certificate (its PEM), so there is no
certificate authority to compromise. A pinned certificate is the trust anchor itself
(``VERIFY_X509_PARTIAL_CHAIN``); since it is no CA, a certificate signed with a node's TLS key
is accepted by nobody:

* a node *serving* trusts exactly the pinned peer certificates for client certificates
  (``CERT_OPTIONAL``: users connect without one; ``/v1/peer/`` routes additionally require
  that the presented certificate's SHA-256 fingerprint is a pinned node's);
* a node *calling* a peer trusts only that peer's pinned certificate and presents its own.

The TLS private key lives in a 0600 file next to the node's configuration (Python's ``ssl``
cannot use a PKCS#11 key). A stolen TLS key lets an attacker talk to peers as the node, but
never yields a share: protocol messages are signed by the HSM identity key and secret
payloads are encrypted to the recipient's HSM transport key.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# what a client needs (pinning, fingerprints, leaves) is the client library's (one definition)
from appliance_client.tls import CertificateProblem as CertificateProblem
from appliance_client.tls import client_context as client_context
from appliance_client.tls import fingerprint_pem as fingerprint_pem
from appliance_client.tls import leaf_pem_of as leaf_pem_of
from appliance_client.tls import load_certificates as load_certificates


def make_node_certificate(node_id: str, hosts: list[str], *, days: int = 3650) -> tuple[bytes, bytes]:
    """A self-signed P-256 certificate for ``node_id`` valid for ``hosts`` (names or IPs).

    Returns (certificate PEM, private key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, node_id),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "threshold-appliance node"),
    ])
    sans: list[x509.GeneralName] = []
    for h in dict.fromkeys(hosts):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        # a leaf: pinned as itself, it can issue nothing that a peer would accept
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH,
                                              x509.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert_pem, key_pem


def write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def fingerprint_der(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def server_context(cert_file: Path, key_file: Path, pinned_peer_pems: list[str]) -> ssl.SSLContext:
    """Serving: our certificate; client certificates optional, verified against the pins."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert_file), str(key_file))
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # a pinned leaf is its own trust anchor
    if pinned_peer_pems:
        ctx.load_verify_locations(cadata="\n".join(pinned_peer_pems))
    return ctx


def peer_client_context(cert_file: Path, key_file: Path, peer_pem: str) -> ssl.SSLContext:
    """Calling one peer: trust only its pinned certificate; present ours."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False  # pinned certificate: identity is the certificate itself
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    ctx.load_verify_locations(cadata=peer_pem)
    ctx.load_cert_chain(str(cert_file), str(key_file))
    return ctx


# ---------------------------------------------------------------------------------------
# an operator's certificate (``appliance init --tls-cert``, ``appliance tls stage``)


def _san_names(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set(), set()
    dns = {n.lower() for n in san.get_values_for_type(x509.DNSName)}
    ips = {str(a) for a in san.get_values_for_type(x509.IPAddress)}
    return dns, ips


def _covers(host: str, dns: set[str], ips: set[str]) -> bool:
    try:
        return str(ipaddress.ip_address(host)) in ips
    except ValueError:
        pass
    host = host.lower().rstrip(".")
    if host in dns:
        return True
    first, _, rest = host.partition(".")
    return bool(rest) and f"*.{rest}" in dns  # a wildcard covers one left-most label


def check_leaf(cert: x509.Certificate, hosts: list[str], *, now: datetime.datetime | None = None) -> None:
    """What a node certificate must be, or CertificateProblem naming what is missing: a leaf
    (basicConstraints CA:FALSE), extended key usage serverAuth and clientAuth (a node serves
    clients and peers, and presents the same certificate when it calls a peer), valid now,
    and a subjectAltName that covers every name in ``hosts`` (the node's URL host and the
    operator's ``--host`` names)."""
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise CertificateProblem("the TLS certificate has no basicConstraints extension: a node "
                                 "certificate must be a leaf (CA:FALSE)") from None
    if bc.ca:
        raise CertificateProblem("the TLS certificate is a CA certificate (basicConstraints CA:TRUE): "
                                 "a node certificate must be a leaf (CA:FALSE)")
    try:
        eku = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        eku = set()
    need = {x509.ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth", x509.ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth"}
    missing = [name for oid, name in need.items() if oid not in eku]
    if missing:
        raise CertificateProblem("the TLS certificate's extended key usage must include serverAuth and "
                                 f"clientAuth (nodes present it to each other as clients too); missing: "
                                 f"{', '.join(missing)}")
    now = now or datetime.datetime.now(datetime.timezone.utc)
    if cert.not_valid_after_utc <= now:
        raise CertificateProblem(f"the TLS certificate expired on {cert.not_valid_after_utc.isoformat()}")
    if cert.not_valid_before_utc > now:
        raise CertificateProblem(f"the TLS certificate is not valid before {cert.not_valid_before_utc.isoformat()}")
    dns, ips = _san_names(cert)
    for h in dict.fromkeys(hosts):
        if not _covers(h, dns, ips):
            named = ", ".join(sorted(dns) + sorted(ips)) or "nothing"
            raise CertificateProblem(f"the TLS certificate's subjectAltName does not cover {h} "
                                     f"(it names: {named})")


def check_key_matches(cert: x509.Certificate, key_pem: bytes) -> None:
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise CertificateProblem("the TLS key is not an unencrypted PEM private key") from None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
        raise CertificateProblem("the TLS key does not match the certificate's public key")


def check_chain(cert: x509.Certificate, chain: list[x509.Certificate]) -> None:
    """Each certificate of ``chain`` issued the one before it (the leaf first)."""
    child = cert
    for i, issuer in enumerate(chain):
        try:
            child.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            which = "the TLS certificate" if i == 0 else f"chain certificate {i}"
            raise CertificateProblem(f"chain certificate {i + 1} ({issuer.subject.rfc4514_string()}) "
                                     f"did not issue {which}") from None
        child = issuer


def operator_certificate(cert_pem: bytes, key_pem: bytes, chain_pem: bytes | None,
                         hosts: list[str]) -> tuple[bytes, bytes]:
    """An operator's certificate (from their CA) checked for a node: (the leaf's PEM, which
    peers pin, and what the node serves: the leaf followed by the chain)."""
    certs = load_certificates(cert_pem, "the --tls-cert file")
    leaf, chain = certs[0], certs[1:]
    if chain_pem is not None:
        chain += load_certificates(chain_pem, "the --tls-chain file")
    check_leaf(leaf, hosts)
    check_key_matches(leaf, key_pem)
    check_chain(leaf, chain)
    enc = serialization.Encoding.PEM
    leaf_pem = leaf.public_bytes(enc)
    return leaf_pem, leaf_pem + b"".join(c.public_bytes(enc) for c in chain)
