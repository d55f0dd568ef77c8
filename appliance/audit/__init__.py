"""Tamper-evident audit log: one per node, append-only, hash-chained, checkpointed.

Entries
-------
Each entry is a JSON object with exactly these fields::

    type      "appliance/audit/v1"
    node      the node that wrote it
    seq       1, 2, 3, ... (no gaps)
    time      UTC, RFC 3339 with milliseconds ("2027-01-15T08:00:00.000Z")
    actor     user or node id, or null
    action    what happened ("sign_request", "approval", "policy_denied", "session_start", ...)
    key       key id, or null
    subject   request / operation / session id, or null
    digest    the request's digest (or payload hash), 64 hex, or null
    decision  short code ("allowed", "denied", "pending", "signed", "failed", ...), or null
    reason    reason code or short message, or null
    prev      hash of the previous entry (64 zeros for the first)

The stored bytes of an entry are its RFC 8785 canonical JSON; its hash is the SHA-256 of
those bytes, and the next entry's ``prev`` is that hash. The API takes only these fields,
each checked (ids, codes, hex), and refuses anything that looks like secret material (long
hex, decimal or base64 runs, PEM) with :class:`AuditFieldError`.

Export (JSON Lines), in order::

    {"entry":<the stored bytes, verbatim>,"hash":"<sha256 of them>"}
    {"checkpoint":{...},"cosignatures":{"node-2":"<hex>"},"signature":"<hex>"}

Each line is itself canonical JSON, so the exact stored bytes of every entry are in it.

Checkpoints
-----------
Every ``checkpoint_every`` entries and at :meth:`AuditLog.close`, the node signs
``{"type": "appliance/audit-checkpoint/v1", "node", "seq", "head", "time"}`` (canonical
JSON; the signed digest is its SHA-256) with its identity key through the injected
``signer(digest) -> 64-byte r||s`` (secp256k1). Peers co-sign it: the node sends the
checkpoint to each peer, which checks it with :meth:`AuditLog.witness` (valid signature, no
second head for a sequence number it already saw from that node), keeps it, and returns its
own signature; the node stores that with :meth:`AuditLog.add_cosignature`. A node that
rewrites its history then contradicts checkpoints its peers hold.

Fail closed
-----------
If an entry cannot be written (database gone, read-only, disk full, locked), the call raises
:class:`AuditUnavailable` and nothing is recorded: the caller must refuse the action.

Verification
------------
:func:`verify_export` checks every line, the chain, each checkpoint's signature and
co-signatures against the configured node keys, and names the first entry that is missing,
altered or out of order. Entries cut off the end (with their checkpoints) only show against
the checkpoints the peers witnessed: :mod:`appliance.audit.anchor`; the command
``appliance audit verify FILE`` (:mod:`appliance.audit.command`) requires them by default.

Storage
-------
A node keeps the log's tables in its one database (``node.db``): :class:`AuditLog` takes the
node's ``Database`` as a transaction provider (:mod:`~appliance.audit.connection`), so an entry
written inside a larger transaction commits or rolls back with the state change it records.
A log of the old layout (its own ``audit.db``) is moved in at start, verbatim, and the file
renamed aside (:mod:`~appliance.audit.legacy`).

The package: :mod:`~appliance.audit.records` (entries, checkpoints, field checks, errors),
:mod:`~appliance.audit.log` (:class:`AuditLog`), :mod:`~appliance.audit.verify`
(:func:`verify_export`), :mod:`~appliance.audit.anchor` (the peers' witnessed checkpoints)
and :mod:`~appliance.audit.command` (``appliance audit verify``; it is a client of the API,
so this package does not import it).
"""

from __future__ import annotations

from appliance.audit.anchor import (
    ANCHOR_TYPE,
    Anchor,
    AnchorError,
    anchor_document,
    parse_anchor_bytes,
    parse_anchor_document,
    verify_with_anchors,
)
from appliance.audit.connection import OwnConnection, TxProvider
from appliance.audit.legacy import Adopted, AuditLogConflict, adopt_legacy_log
from appliance.audit.log import (
    AuditLog,
    Signer,
)
from appliance.audit.records import (
    CHECKPOINT_FIELDS,
    CHECKPOINT_TYPE,
    ENTRY_FIELDS,
    ENTRY_TYPE,
    GENESIS,
    MAX_REASON,
    OPTIONAL_ENTRY_FIELDS,
    AuditEntry,
    AuditError,
    AuditFieldError,
    AuditUnavailable,
    Checkpoint,
    verify_node_signature,
)
from appliance.audit.verify import (
    VerifyReport,
    node_keys_from_cluster,
    verify_export,
    verify_file,
)

__all__ = [
    "ANCHOR_TYPE",
    "Adopted",
    "Anchor",
    "AnchorError",
    "AuditLogConflict",
    "OwnConnection",
    "TxProvider",
    "adopt_legacy_log",
    "AuditEntry",
    "AuditError",
    "AuditFieldError",
    "AuditLog",
    "AuditUnavailable",
    "CHECKPOINT_FIELDS",
    "CHECKPOINT_TYPE",
    "Checkpoint",
    "ENTRY_FIELDS",
    "OPTIONAL_ENTRY_FIELDS",
    "ENTRY_TYPE",
    "GENESIS",
    "MAX_REASON",
    "Signer",
    "VerifyReport",
    "anchor_document",
    "node_keys_from_cluster",
    "parse_anchor_bytes",
    "parse_anchor_document",
    "verify_export",
    "verify_file",
    "verify_node_signature",
    "verify_with_anchors",
]
