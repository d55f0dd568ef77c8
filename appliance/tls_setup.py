"""Setting up a node's TLS: the self-signed default or the operator's certificate
(``appliance init --tls-cert/--tls-key/--tls-chain``), and staging the next certificate of a
running node for a rotation (``appliance tls stage``; the rotation itself is a signed
cluster-config update: :mod:`appliance.cluster.cert_rotation`)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from appliance.config import ConfigError, NodeConfig
from appliance.fsmodes import make_private_dir, write_private_file
from appliance.tls import (CertificateProblem, check_key_matches, fingerprint_pem, load_certificates,
                           make_node_certificate, operator_certificate)


@dataclass(frozen=True)
class OperatorTLS:
    """``--tls-cert``/``--tls-key``/``--tls-chain``: the operator's node certificate (PEM; the
    certificate file may carry the chain after the leaf), its private key, and the chain."""

    cert: bytes
    key: bytes
    chain: bytes | None = None


def add_tls_arguments(p: argparse.ArgumentParser) -> None:
    """``init`` and ``tls stage``: bring your own certificate (else a self-signed one)."""
    p.add_argument("--tls-cert", type=Path, help="the node's certificate from your CA (PEM, a leaf with "
                   "CA:FALSE, EKU serverAuth+clientAuth, SANs covering the URL host and every --host)")
    p.add_argument("--tls-key", type=Path, help="its private key (PEM, unencrypted)")
    p.add_argument("--tls-chain", type=Path, help="intermediate CA certificates to serve after it (PEM)")


def operator_tls_of(args) -> OperatorTLS | None:
    """The operator's TLS files named on the command line (None: a self-signed certificate)."""
    if args.tls_cert is None and args.tls_key is None:
        if args.tls_chain is not None:
            raise ConfigError("--tls-chain needs --tls-cert and --tls-key")
        return None
    if args.tls_cert is None or args.tls_key is None:
        raise ConfigError("--tls-cert and --tls-key go together")
    try:
        return OperatorTLS(args.tls_cert.read_bytes(), args.tls_key.read_bytes(),
                           args.tls_chain.read_bytes() if args.tls_chain else None)
    except OSError as exc:
        raise ConfigError(f"cannot read {exc.filename}: {exc.strerror}") from None


def node_tls_material(node_id: str, url: str, hosts: list[str] | None,
                      tls: OperatorTLS | None) -> tuple[bytes, bytes, bytes]:
    """(the leaf certificate peers pin, the private key, what the node serves: leaf + chain).
    Self-signed for the URL host, ``hosts``, localhost and 127.0.0.1 when ``tls`` is None;
    else the operator's, which must cover the URL host and ``hosts`` (ConfigError says what
    is wrong with it)."""
    url_host = urlparse(url).hostname or "127.0.0.1"
    if tls is None:
        names = list(hosts or []) + [url_host, "localhost", "127.0.0.1"]
        cert_pem, key_pem = make_node_certificate(node_id, names)
        return cert_pem, key_pem, cert_pem
    try:
        leaf, served = operator_certificate(tls.cert, tls.key, tls.chain, [url_host, *(hosts or [])])
    except CertificateProblem as exc:
        raise ConfigError(str(exc)) from None
    return leaf, tls.key, served


# ---------------------------------------------------------------------------------------
# the next certificate of a running node (a rotation)


def staged_paths(data_dir: Path, fingerprint: str) -> tuple[Path, Path]:
    """Where ``appliance tls stage`` keeps a node's next certificate (what it will serve:
    leaf + chain) and its key, named by the leaf's SHA-256."""
    d = Path(data_dir) / "tls" / "staged"
    return d / f"{fingerprint}.crt", d / f"{fingerprint}.key"


def stage_certificate(config: NodeConfig, tls: OperatorTLS | None, hosts: list[str] | None = None) -> dict:
    """Make (self-signed) or check (``tls``: the operator's) the node's next certificate and
    keep it, with its key, under ``tls/staged/`` until a signed certificate update for it
    is applied. Returns ``node_id``, ``tls_cert_sha256``, ``tls_cert`` (the leaf PEM the
    admins sign an update for) and ``cert_file``."""
    leaf, key, served = node_tls_material(config.node_id, config.me.url, hosts, tls)
    fp = fingerprint_pem(leaf)
    crt_path, key_path = staged_paths(config.data_dir, fp)
    make_private_dir(crt_path.parent)
    write_private_file(key_path, key)
    write_private_file(crt_path, served)
    return {"node_id": config.node_id, "tls_cert_sha256": fp, "tls_cert": leaf.decode(), "cert_file": str(crt_path)}


def staged_key_problem(config: NodeConfig, fingerprint: str) -> str | None:
    """Why the node could not serve the staged certificate ``fingerprint`` (None: it can)."""
    crt_path, key_path = staged_paths(config.data_dir, fingerprint)
    if not (crt_path.exists() and key_path.exists()):
        return (f"{config.node_id} has no staged key for certificate {fingerprint[:16]}...: run `appliance tls "
                f"stage` on {config.node_id} and sign an update for the certificate it prints")
    try:
        leaf = load_certificates(crt_path.read_bytes(), str(crt_path))[0]
        check_key_matches(leaf, key_path.read_bytes())
    except CertificateProblem as exc:
        return f"{crt_path}: {exc}"
    return None


def install_staged(config: NodeConfig, fingerprint: str) -> bool:
    """Serve the staged certificate ``fingerprint`` from now on: its files replace
    ``[tls] cert`` and ``key`` (each renamed over atomically; the staged copies are removed).
    False if nothing is staged under that name."""
    crt_path, key_path = staged_paths(config.data_dir, fingerprint)
    if staged_key_problem(config, fingerprint) is not None:
        return False
    write_private_file(config.tls_key, key_path.read_bytes())
    write_private_file(config.tls_cert, crt_path.read_bytes())
    crt_path.unlink()
    key_path.unlink()
    return True
