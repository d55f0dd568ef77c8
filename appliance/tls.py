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
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


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


def fingerprint_pem(pem: bytes | str) -> str:
    """SHA-256 of the certificate's DER, hex."""
    if isinstance(pem, str):
        pem = pem.encode()
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


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


def client_context(server_pem: str | None = None, *, ca_file: str | Path | None = None) -> ssl.SSLContext:
    """For users: trust the node's (pinned) certificate, or a CA file, or the system store."""
    if server_pem is None and ca_file is None:
        return ssl.create_default_context()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    if server_pem is not None:
        ctx.check_hostname = False
        ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        ctx.load_verify_locations(cadata=server_pem)
    else:
        ctx.check_hostname = True
        ctx.load_verify_locations(cafile=str(ca_file))
    return ctx
