"""A node's durable state on SQLite: one connection per process role
(:class:`~appliance.storage.database.Database`), one migration list
(:mod:`~appliance.storage.migrations`), and repositories per aggregate: keys and their sealed
secrets and status (:mod:`~appliance.storage.keys`), the sealed prime pool
(:mod:`~appliance.storage.primes`), presignatures (:mod:`~appliance.storage.presignatures`),
the FROST nonce pool (:mod:`~appliance.storage.frost_nonces`: the same single-use rule),
sign requests (:mod:`~appliance.storage.sign_requests`), key operations
(:mod:`~appliance.storage.operations`), two-phase key changes
(:mod:`~appliance.storage.lifecycle`), statements and decisions
(:mod:`~appliance.storage.statements`), policy updates (:mod:`~appliance.storage.policy_updates`),
used jobs and requests (:mod:`~appliance.storage.replay`) and accepted nonces
(:mod:`~appliance.storage.nonces`). :class:`Store` is the core repositories behind one object;
:class:`NodeStore` is the facade the node uses.

Every secret reaches the store already sealed by the node's HSM (:mod:`hsm`): values are
opaque bytes here, and the store refuses one that does not even parse as a sealed blob
(:class:`NotSealedError`), so a plaintext cannot be stored by mistake.

SQLite settings (:mod:`~appliance.storage.database`): WAL journal, ``synchronous=FULL`` (a
commit is on disk when it returns, which the presignature rule below relies on), foreign keys
on, ``secure_delete`` on, a busy timeout so several connections (threads or processes) can
share the file. Schema changes are numbered migrations recorded in the ``schema_version``
table; a database newer than this code is refused.

Presignatures: available -> reserved -> spent, or available -> spent. Never backwards.

* :meth:`Store.take_presignature` moves one available presignature of (key, signer set)
  to *spent* in one IMMEDIATE transaction, commits (fsync), and only then returns its
  sealed blob and HSM key label. Two takers never get the same one.
* :meth:`Store.reserve_presignature` moves one to *reserved*, bound to this Store object
  (a random ``instance_id``); :meth:`Store.spend_reserved` moves it on to *spent* and
  returns the blob - only for the same Store object. A process that dies holding a
  reservation leaves it reserved for ever: no other Store can spend it, and
  :meth:`Store.burn_stale_reservations` (called by the node at start-up) turns it into
  *spent*. So after a crash at any point a presignature may be lost, never used twice.
* Spending returns the blob and clears it from the row. The caller then unseals it with
  the presignature's own HSM key and destroys that key
  (:meth:`hsm.HSM.consume_presignature`), records that
  (:meth:`Store.mark_presignature_keys_destroyed`), and only then computes its partial
  signature. Keys of spent presignatures whose destruction was not recorded (crash, HSM
  away) are listed by :meth:`Store.presignature_keys_to_destroy`; the node destroys them
  at start-up (:func:`appliance.presig_keys.destroy_spent_presignature_keys`). Because the key is gone, a database restored from an old copy cannot
  unseal a spent presignature.

The node's sequence::

    taken = store.take_presignature(key_id, signer_set)            # durable: spent
    secret = await hsm.consume_presignature_async(taken.context, taken.sealed)
    store.mark_presignature_keys_destroyed([taken.hsm_key_label])
    ... compute and send the partial signature ...
"""

from __future__ import annotations

from appliance.storage.database import (
    Database,
)
from appliance.storage.errors import (
    ConflictError,
    DuplicateKeyError,
    NotFoundError,
    NotSealedError,
    PresignatureUnavailable,
    StoreError,
)
from appliance.storage.migrations import (
    MIGRATIONS,
    SCHEMA_VERSION,
)
from appliance.storage.node_store import (
    NodeStore,
)
from appliance.storage.nonces import (
    NonceLedger,
)
from appliance.storage.records import (
    REQUEST_STATUSES,
    SECRET_KINDS,
    KeyRecord,
    PresignatureRecord,
    Reservation,
    SignRequest,
    TakenPresignature,
)
from appliance.storage.store import (
    Store,
)

__all__ = [
    "ConflictError",
    "DuplicateKeyError",
    "Database",
    "KeyRecord",
    "MIGRATIONS",
    "NodeStore",
    "NonceLedger",
    "NotFoundError",
    "NotSealedError",
    "PresignatureRecord",
    "PresignatureUnavailable",
    "REQUEST_STATUSES",
    "Reservation",
    "SCHEMA_VERSION",
    "SECRET_KINDS",
    "SignRequest",
    "Store",
    "StoreError",
    "TakenPresignature",
]
