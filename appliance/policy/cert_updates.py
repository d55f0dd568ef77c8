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

from appliance.errors import PolicyDenied
from appliance.policy.model import Policy
from appliance.policy.updates import check_quorum
# the statement is the client library's (admins build and sign it there)
from appliance_client.statements import MAX_CERT_PEM as MAX_CERT_PEM
from appliance_client.statements import MAX_VERSION as MAX_VERSION
from appliance_client.statements import CertUpdate

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
