"""Cluster-config updates that replace a node's pinned TLS certificate (a rotation): a
statement signed by the ``policy_change`` quorum of the policy in force, like a policy update.

The statement each admin signs (canonical JSON)::

    {"type": "appliance/tls-cert-update/v1", "cluster_id", "policy_hash", "version",
     "node_id", "previous_cert_sha256", "tls_cert_sha256"}

``version`` counts the certificate updates of the cluster: an update applies only as the next
one (``stale_cert_update`` otherwise), so a replayed update, or one signed before another
rotation, changes nothing. ``previous_cert_sha256`` names the certificate it replaces
(``cert_mismatch`` otherwise) and ``policy_hash`` the policy whose admins signed it
(``policy_mismatch`` otherwise)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from appliance.canonical import canonical_json
from appliance.errors import PolicyDenied
from appliance.ids import is_id
from appliance.policy.grammar import (
    CERT_UPDATE_TYPE,
    HEX32,
    check_id,
    parse_statement_json,
    sig_hex,
    want,
)
from appliance.policy.keys import sign_message
from appliance.policy.model import Policy
from appliance.policy.updates import check_quorum
from appliance.tls import fingerprint_pem

MAX_CERT_PEM = 16 << 10  # a leaf certificate's PEM; chains are served, never pinned
MAX_VERSION = 1 << 31


@dataclass(frozen=True)
class CertUpdate:
    """A node's new pinned certificate (its leaf PEM) with the admins' signatures."""

    cluster_id: str
    policy_hash: str
    version: int
    node_id: str
    previous_cert_sha256: str
    tls_cert: str
    signatures: tuple[tuple[str, bytes], ...] = ()

    @property
    def tls_cert_sha256(self) -> str:
        return fingerprint_pem(self.tls_cert)

    def statement(self) -> dict:
        return {"type": CERT_UPDATE_TYPE, "cluster_id": self.cluster_id, "policy_hash": self.policy_hash,
                "version": self.version, "node_id": self.node_id,
                "previous_cert_sha256": self.previous_cert_sha256, "tls_cert_sha256": self.tls_cert_sha256}

    def message(self) -> bytes:
        """The bytes each admin signs."""
        return canonical_json(self.statement())

    def signed_by(self, admin: str, private_key: Any) -> CertUpdate:
        return replace(self, signatures=(*self.signatures, (admin, sign_message(private_key, self.message()))))

    def to_json(self) -> dict:
        return {"cluster_id": self.cluster_id, "policy_hash": self.policy_hash, "version": self.version,
                "node_id": self.node_id, "previous_cert_sha256": self.previous_cert_sha256,
                "tls_cert": self.tls_cert,
                "signatures": [{"user": u, "signature": s.hex()} for u, s in self.signatures]}

    @classmethod
    def from_json(cls, data: Any) -> CertUpdate:
        """Parsed and bounded, else PolicyError (the service answers ``bad_cert_update``)."""
        if isinstance(data, (bytes, str)):
            data = parse_statement_json(data)
        fields = {"cluster_id", "policy_hash", "version", "node_id", "previous_cert_sha256", "tls_cert",
                  "signatures"}
        want(isinstance(data, Mapping) and set(data) == fields,
             f"a certificate update is {{{', '.join(sorted(fields))}}}")
        for name in ("policy_hash", "previous_cert_sha256"):
            want(isinstance(data[name], str) and HEX32.match(data[name]) is not None,
                 f"{name} must be 64 lowercase hex characters")
        want(type(data["version"]) is int and 1 <= data["version"] < MAX_VERSION, "version must be a positive integer")
        want(isinstance(data["cluster_id"], str) and 0 < len(data["cluster_id"]) <= 64, "cluster_id must be a string")
        pem = data["tls_cert"]
        want(isinstance(pem, str) and 0 < len(pem) <= MAX_CERT_PEM
             and pem.count("-----BEGIN CERTIFICATE-----") == 1,
             f"tls_cert must be one PEM certificate (at most {MAX_CERT_PEM} characters)")
        try:
            fingerprint_pem(pem)
        except ValueError:
            want(False, "tls_cert does not parse as an X.509 certificate")
        sigs = data["signatures"]
        want(isinstance(sigs, list) and len(sigs) <= 100
             and all(isinstance(s, Mapping) and set(s) == {"user", "signature"} for s in sigs),
             "signatures: [{user, signature}]")
        want(is_id("node_id", data["node_id"]), "node_id must be a node id")
        return cls(data["cluster_id"], data["policy_hash"], data["version"], data["node_id"],
                   data["previous_cert_sha256"], pem,
                   tuple((check_id(s["user"], "user"), sig_hex(s["signature"])) for s in sigs))


def verify_cert_update(policy: Policy, version_in_force: int, pinned_sha256: str, update: CertUpdate) -> None:
    """Nothing if ``policy``'s ``policy_change`` quorum signed ``update`` and it is the next
    update of the node's certificate in force, else :class:`PolicyDenied` (``wrong_cluster``,
    ``policy_mismatch``, ``stale_cert_update``, ``cert_mismatch``, and the quorum's codes)."""
    if update.cluster_id != policy.cluster_id:
        raise PolicyDenied("wrong_cluster", "the certificate update is for another cluster")
    if update.policy_hash != policy.hash:
        raise PolicyDenied("policy_mismatch", "the certificate update was signed under another policy")
    if update.version != version_in_force + 1:
        raise PolicyDenied("stale_cert_update", f"the certificate update's version ({update.version}) must be "
                           f"the next one ({version_in_force + 1})")
    if update.previous_cert_sha256 != pinned_sha256:
        raise PolicyDenied("cert_mismatch", f"the certificate update replaces {update.previous_cert_sha256[:16]}..., "
                           f"but {update.node_id}'s certificate in force is {pinned_sha256[:16]}...")
    check_quorum(policy, update.message(), update.signatures)
