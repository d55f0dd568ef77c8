"""TLS for a client of a node: trust the node's pinned certificate (a pinned leaf is its own
trust anchor), a CA file, or the system store; certificate fingerprints and leaves (the node's
:mod:`appliance.tls` uses these same functions)."""

from __future__ import annotations

import hashlib
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization


def fingerprint_pem(pem: bytes | str) -> str:
    """SHA-256 of the certificate's DER, hex."""
    if isinstance(pem, str):
        pem = pem.encode()
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


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


class CertificateProblem(ValueError):
    """An operator's TLS certificate, key or chain that a node cannot use (the message says
    exactly what is wrong); :class:`appliance.errors.ServiceError` code ``bad_tls_certificate``
    where a service reports it."""

    code = "bad_tls_certificate"


def load_certificates(pem: bytes | str, what: str) -> list[x509.Certificate]:
    """Every certificate in a PEM text (at least one), or CertificateProblem."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        certs = []
    if not certs:
        raise CertificateProblem(f"{what} holds no PEM certificate")
    return certs


def leaf_pem_of(pem: bytes | str) -> str:
    """The first certificate of a PEM text (the leaf a chain file starts with), as PEM."""
    return load_certificates(pem, "the certificate")[0].public_bytes(serialization.Encoding.PEM).decode()
