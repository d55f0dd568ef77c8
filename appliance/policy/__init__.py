"""Cluster policy: who may ask for what, who must approve it, and the evaluator every
signer node runs by itself before it takes part in a session.

One policy file (TOML) per cluster, identical on every node. Its *hash* is the SHA-256 of
its canonical form (:meth:`Policy.canonical_bytes`, RFC 8785 JSON of the parsed, fully
expanded policy: comments, ordering and PEM spelling do not change it). Nodes put the hash
in every session and refuse a peer whose hash differs. A new policy takes effect only when
the admin quorum of the current one has signed it (:class:`PolicyUpdate`,
:func:`verify_policy_update`).

Policy file::

    [policy]
    cluster_id = "demo"
    version = 1                      # a policy update must raise it
    clock_skew_s = 30                # tolerance for times in the future

    [[users]]
    id = "alice"
    roles = ["initiator"]
    public_key = "-----BEGIN PUBLIC KEY-----..."   # Ed25519 or P-256: PEM (SPKI), or raw
                                     # "ed25519:<hex>" / "p256:<hex SEC1>" (or bare hex)

    [signing]                        # the rule for every key without its own
    initiator_roles = ["initiator"]
    approvals = [{ roles = ["approver"], count = 1 }]   # every group, distinct people
    request_ttl_s = 86400            # a request is valid this long at most
    approval_ttl_s = 86400           # an approval counts this long at most
    max_signatures = 100             # optional: per key, per window
    window_s = 3600
    derivation_paths = ["m", "m/0/*", "m/44'/60'/0'/0/*", "m/**"]
    allow_raw_digest = true          # sign a bare 32-byte digest (blind); default false
    payload_types = ["psbt", "eth_tx", "eip712"]   # the default; also "message" (SHA-256 of
                                     # a text) and "eip191" (personal_sign), only when named
    hours_utc = [8, 18]              # optional: 08:00 to 17:59 UTC ([22, 6] wraps)

    [signing.transactions]           # rules over decoded payloads (appliance.payloads.TxRules)
    network = "mainnet"              # Bitcoin network of a PSBT when the request names none
    allowed_destinations = ["bc1q..."]          # also denied_destinations, allowed_assets
    allowed_chain_ids = [1]                     # Ethereum; allowed_networks for Bitcoin
    max_fee = { BTC = 50000, ETH = "10000000000000000" }   # sat / wei (strings beyond 2**53)
    limits = { BTC = { per_transaction = 1000000, per_window = 5000000 } }
    window_seconds = 86400           # the per_window limits' window

    [signing.keys."key_0123"]        # this key's own rule; unset fields come from [signing]
    approvals = [{ roles = ["approver"], count = 2 }]

    [signing.keys."key_hot"]         # automated: no person approves (approvals = []); the
    approvals = []                   # rate (past it: denied rate_limited, never pending) and
    max_signatures = 1000            # every other check still hold, on every signer; amounts
    window_s = 60                    # bounded with [signing.keys."key_hot".transactions]

    [key_changes]                    # keygen, refresh, reshare, import, disable, enable, delete
    roles = ["admin"]
    quorum = 1                       # distinct admins; the requesting admin counts
    request_ttl_s = 86400
    approval_ttl_s = 86400

    [policy_change]                  # signatures needed on a new policy
    roles = ["admin"]
    quorum = 1

A cluster.toml with ``[cluster]`` and ``[[nodes]]`` may hold the policy too: those tables
are ignored here, and ``[cluster].id`` stands in for ``[policy].cluster_id``.

Signed statements
-----------------
A request (:class:`Request`) is signed by its initiator; each decision on it
(:class:`Approval`: ``approve``, ``reject``, or the initiator's ``cancel``) by the person who
makes it. Both are RFC 8785 JSON objects with a ``type`` field (domain separation), so the
bytes signed are unambiguous: two different statements never encode alike. An approval
repeats every binding field of its request (cluster id, policy hash, request id, action,
key id, derivation path, digest or payload hash, parameters, initiator, request expiry), so
it cannot be replayed onto another request, another cluster or another policy. A request id
is the hash of the request statement: the same signed request (same client ``nonce``, the
idempotency key) always has the same id.

Signatures: Ed25519 over the message bytes; ECDSA P-256 with SHA-256 (DER, or raw r||s).
Statements travel as JSON: ``{"statement": {...}, "signature": "<hex>"}``.

Evaluation
----------
:func:`evaluate` is pure: the time and the rate-limit usage are passed in. It returns a
:class:`Decision`: ``allowed``, ``pending`` (reason ``pending_approval``) or ``denied`` with a
machine reason code from :data:`REASONS`. A signer node takes part only if it is ``allowed``
(:meth:`Decision.require_allowed` raises :class:`PolicyDenied`).

The package: :mod:`~appliance.policy.grammar` (statement types, reason codes, id grammars,
:class:`PolicyError`), :mod:`~appliance.policy.keys` (users' keys),
:mod:`~appliance.policy.paths` (derivation paths and patterns), :mod:`~appliance.policy.model`
(:class:`Policy` and its rules), :mod:`~appliance.policy.statements` (requests, approvals),
:mod:`~appliance.policy.evaluation` (:func:`evaluate`, :func:`authorize`) and
:mod:`~appliance.policy.updates` (signed policy changes). Import from ``appliance.policy``.
"""

from __future__ import annotations

from appliance.errors import PolicyDenied
from appliance.policy.grammar import (
    ACTIONS,
    ALLOWED,
    APPROVAL_TYPE,
    BIP340,
    BITCOIN_NETWORKS,
    CERT_UPDATE_TYPE,
    DECISIONS,
    DEFAULT_SCHEME,
    DENIED,
    ECDSA,
    ED25519,
    KEY_ACTIONS,
    LIFECYCLE_ACTIONS,
    MAX_TTL_S,
    PAYLOAD_TYPES,
    PENDING,
    POLICY_FORMAT,
    POLICY_UPDATE_TYPE,
    REASONS,
    REQUEST_TYPE,
    SCHEMES,
    SIGN,
    PolicyError,
)
from appliance.policy.keys import (
    UserKey,
    load_private_key,
    sign_message,
)
from appliance.policy.paths import (
    HARDENED,
    normalize_path,
    parse_path,
    path_matches,
)
from appliance.policy.model import (
    DEFAULT_ROLES,
    ApprovalGroup,
    Policy,
    QuorumRule,
    SigningRule,
    User,
    default_policy,
)
from appliance.policy.statements import (
    Approval,
    Request,
    SignedRequest,
    make_approval,
    make_request,
    new_nonce,
    payload_hash,
    summary_hash,
)
from appliance.policy.evaluation import (
    Decision,
    Usage,
    authorize,
    check_approval,
    check_job_binding,
    evaluate,
)
from appliance.policy.updates import (
    PolicyUpdate,
    apply_updates,
    check_quorum,
    verify_policy_update,
)
from appliance.policy.cert_updates import (
    CertUpdate,
    verify_cert_update,
)

__all__ = [
    "ACTIONS",
    "ALLOWED",
    "APPROVAL_TYPE",
    "Approval",
    "ApprovalGroup",
    "BIP340",
    "BITCOIN_NETWORKS",
    "DEFAULT_SCHEME",
    "ECDSA",
    "ED25519",
    "SCHEMES",
    "CERT_UPDATE_TYPE",
    "CertUpdate",
    "DECISIONS",
    "DEFAULT_ROLES",
    "DENIED",
    "Decision",
    "HARDENED",
    "KEY_ACTIONS",
    "LIFECYCLE_ACTIONS",
    "MAX_TTL_S",
    "PAYLOAD_TYPES",
    "PENDING",
    "POLICY_FORMAT",
    "POLICY_UPDATE_TYPE",
    "Policy",
    "PolicyDenied",
    "PolicyError",
    "PolicyUpdate",
    "QuorumRule",
    "REASONS",
    "REQUEST_TYPE",
    "Request",
    "SIGN",
    "SignedRequest",
    "SigningRule",
    "Usage",
    "User",
    "UserKey",
    "apply_updates",
    "authorize",
    "check_approval",
    "check_job_binding",
    "check_quorum",
    "default_policy",
    "evaluate",
    "load_private_key",
    "make_approval",
    "make_request",
    "new_nonce",
    "normalize_path",
    "parse_path",
    "path_matches",
    "payload_hash",
    "summary_hash",
    "sign_message",
    "verify_cert_update",
    "verify_policy_update",
]
