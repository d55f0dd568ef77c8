"""Small interfaces the node's services depend on, each named for its role.

Production adapters: :class:`appliance.storage.NodeStore` (every store port),
:class:`appliance.metered_hsm.MeteredHSM` (``Sealer``), :class:`appliance.runtime.HSMSigner`
(``IdentitySigner``), :class:`appliance.transport.PeerClient` (``PeerLink``),
:class:`appliance.audit.AuditLog` (``AuditSink``, ``CheckpointLog``), :class:`SystemClock`,
:class:`NoEvents`. Test fakes: ``tests/node/fakes.py`` (``tests/node/test_ports.py`` checks
that both have every member of every port, with compatible signatures).

The store, the HSM, the identity signer and the audit log are opened when the node starts,
after the services are built: a service is handed an :class:`Opened` slot of the port and
calls it (``self.requests().get_sign_request(rid)``) when it needs the adapter; see
:mod:`appliance.runtime` for why.
"""

from __future__ import annotations

import time
from typing import Any, ContextManager, Generic, Mapping, NamedTuple, Protocol, Sequence, TypeVar

from appliance.errors import ServiceError
from appliance.sealed import SealContext

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


# -- plumbing -----------------------------------------------------------------------------


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock seconds since the epoch (what policy validity windows are in)."""


class SystemClock:
    def now(self) -> float:
        return time.time()


class EventSink(Protocol):
    def emit(self, event: str, **fields: Any) -> None:
        """Something a test may wait on happened (``round``: a protocol round's messages are
        about to leave this node: ``job``, ``protocol``, ``round``)."""


class NoEvents:
    def emit(self, event: str, **fields: Any) -> None:
        return None


SYSTEM_CLOCK = SystemClock()
NO_EVENTS = NoEvents()


class ProgressSink(Protocol):
    def report(self, spec: Mapping[str, Any], phase: str, done: int, total: int,
               detail: str | None = None) -> None:
        """A job's own part on this node advanced: ``phase`` (``keygen``, ``primes``, ``aux``,
        ``refresh``, ``reshare``, ``commit``...) with ``done`` of ``total`` steps (rounds finished,
        primes in hand). ``spec``: the job's description (its ``operation_id``, ``coordinator``);
        the sink keeps what it shows (appliance/jobs/progress.py)."""


class NoProgress:
    def report(self, spec: Mapping[str, Any], phase: str, done: int, total: int,
               detail: str | None = None) -> None:
        return None


NO_PROGRESS = NoProgress()


class Late(Protocol[T_co]):
    """A port that is opened at start (read side of :class:`Opened`)."""

    def __call__(self) -> T_co:
        """The adapter; ServiceError ``not_ready`` before it is opened."""

    @property
    def value(self) -> T_co | None:
        """The adapter, or None before it is opened (for readiness checks)."""


class Opened(Generic[T]):
    """The slot of one adapter opened at start: filled by the composition root, read by services."""

    def __init__(self, what: str, value: T | None = None) -> None:
        self.what = what
        self.value: T | None = value

    def __call__(self) -> T:
        if self.value is None:
            raise ServiceError("not_ready", f"the {self.what} is not open")
        return self.value

    def set(self, value: T | None) -> None:
        self.value = value


# -- the HSM, the identity key, the peers, the audit log ----------------------------------


class Sealer(Protocol):
    """The node's HSM as services use it: seal and unseal, presignature keys, identity, transport."""

    async def seal_async(self, context: SealContext, plaintext: bytes) -> bytes:
        """Seal a secret under the key-encryption key, bound to ``context``."""

    async def unseal_async(self, context: SealContext, blob: bytes) -> bytes:
        """Open a blob sealed under ``context`` (HSMIntegrityError if it is not that)."""

    async def seal_presignature_async(self, context: SealContext, plaintext: bytes) -> bytes:
        """Seal a presignature under a key object of its own."""

    async def consume_presignature_async(self, context: SealContext, blob: bytes) -> bytes:
        """Open a presignature and destroy its key (it can never be opened again)."""

    async def destroy_presignature_key_async(self, label: str) -> bool:
        """Destroy one presignature's key object (False if it was gone)."""

    async def sign_digest_async(self, digest: bytes) -> bytes:
        """Sign a 32-byte digest with the identity key (r||s)."""

    async def transport_decrypt_async(self, envelope: bytes, *, context: bytes = b"") -> bytes:
        """Open an envelope sent to this node's transport key."""

    def health(self) -> bool:
        """Does the token answer?"""


class IdentitySigner(Protocol):
    """The node's identity key as a protocol message signer (low-S r||s)."""

    def sign(self, digest: bytes) -> bytes:
        """Sign a 32-byte digest."""

    def public_key(self) -> bytes:
        """The identity public key (compressed SEC1)."""


class PeerLink(Protocol):
    """Requests to another node of the cluster (pinned mutual TLS)."""

    async def request(self, peer: Any, method: str, path: Any, *, json_body: Any = None,
                      data: bytes | None = None, content_type: str | None = None,
                      timeout: float = 10.0, pool: str = "protocol") -> Any:
        """One request to ``peer``; its JSON answer, or PeerError."""


class Transactions(Protocol):
    """The node's database as one transaction for a state change and its audit entry."""

    def transaction(self) -> ContextManager[Any]:
        """A write transaction (nested: a savepoint); rolled back if the block raises."""


class AuditSink(Protocol):
    """The audit log as decisions are written to it (no entry, no action)."""

    def append(self, actor: str | None, action: str, *, key: str | None = None,
               subject: str | None = None, digest: bytes | str | None = None,
               decision: str | None = None, reason: str | None = None,
               request_id: str | None = None) -> Any:
        """Write one entry durably, or raise AuditUnavailable. ``request_id``: the X-Request-Id
        that caused it (optional field)."""

    def record(self, actor: str | None, action: str, *, key_id: str | None = None,
               subject: str | None = None, digest: bytes | str | None = None,
               decision: str | None = None, reason: str | None = None,
               request_id: str | None = None) -> Any:
        """``append`` with the ``key_id`` keyword."""


class CheckpointLog(Protocol):
    """The audit log's checkpoints as co-signing uses them."""

    def checkpoints(self, since: int = 0) -> list:
        """Checkpoints after ``since``."""

    def checkpoint(self) -> Any:
        """Make a checkpoint of the head if anything came after the last one."""

    def add_cosignature(self, seq: int, node: str, signature: bytes,
                        node_keys: Mapping[str, bytes | str]) -> Any:
        """Keep a peer's co-signature of checkpoint ``seq``."""

    def witness(self, checkpoint: Any, node_keys: Mapping[str, bytes | str]) -> bytes:
        """Co-sign another node's checkpoint (never two heads for one entry)."""


# -- the stores, one per aggregate ----------------------------------------------------------


class SignRequestStore(Protocol):
    """Sign requests: their rows, status and signer sets."""

    def put_sign_request(self, request_id: str, key_id: str, digest: bytes | None, path: str | None,
                         initiator: str, signers: list[str] | None, *, payload: Any = None,
                         payload_type: str | None = None, request: dict | None = None,
                         status: str = "signing") -> None:
        """Store a new request (pending or signing)."""

    def update_sign_request(self, request_id: str, *, status: str, signers: list[str] | None = None,
                            signature: dict | None = None, error: dict | None = None) -> None:
        """Set a request's status (and signers, signature, error)."""

    def move_sign_request(self, request_id: str, *, status: str, expected_status: str,
                          error: dict | None = None) -> None:
        """Set its status only if it is still ``expected_status`` (ConflictError if not)."""

    def note_presignature(self, request_id: str, presig_id: bytes) -> None:
        """Record the stored presignature a request's signature used."""

    def get_sign_request(self, request_id: str) -> dict | None:
        """One request, or None."""

    def list_sign_requests(self, statuses: tuple[str, ...]) -> list[dict]:
        """Requests in these statuses, oldest first."""

    def page_sign_requests(self, statuses: tuple[str, ...] | None, key_id: str | None, initiator: str | None,
                           created_after: float | None, created_before: float | None,
                           after: tuple[float, str] | None, limit: int, scope: ReadScope | None = None) -> list[dict]:
        """Up to ``limit`` requests, newest first by (created, request_id), strictly after
        ``after``; ``statuses`` as shown (a statement's final status stands for the stored one);
        ``scope``: only the rows it lets a person read (in the query, so a page and its cursor
        are made of readable rows only)."""


class StatementStore(Protocol):
    """Users' signed statements (requests) and the decisions on them."""

    def put_statement(self, request_id: str, subject: str, action: str, key_id: str | None,
                      request: dict, *, payload: Any = None, network: str | None = None,
                      decoded: dict | None = None) -> None:
        """Keep a signed request statement."""

    def get_statement(self, request_id: str) -> dict | None:
        """A statement, or None."""

    def set_statement_final(self, request_id: str, final: str) -> None:
        """Close a statement (rejected, cancelled, ...)."""

    def add_decision(self, request_id: str, approver: str, decision: str, approval: dict) -> bool:
        """Keep one person's signed decision; False if they already decided."""

    def decisions(self, request_id: str) -> list[dict]:
        """The signed decisions on a request."""

    def last_approvals(self, exclude_request: str) -> list[dict]:
        """Approvals of the most recent other request (a test-only fault replays them)."""


class KeyStore(Protocol):
    """Keys, their sealed shares and status."""

    def get_key(self, key_id: str) -> dict | None:
        """One key, or None."""

    def list_keys(self, status: str | None = "active") -> list[dict]:
        """Keys with this status (None: all)."""

    def page_keys(self, status: str | tuple[str, ...] | None, after: tuple[float, str] | None,
                  limit: int) -> list[dict]:
        """Up to ``limit`` keys with this status or one of these (None: all), oldest first by (created, key_id),
        strictly after ``after``."""

    def share_blob(self, key_id: str, epoch: int) -> bytes:
        """The sealed share of a key's epoch."""

    def put_pending_key(self, key_id: str, public_key: bytes, threshold: int, participants: list[int],
                        epoch: int, bits: int, blob: bytes, chain_code: bytes,
                        scheme: str = "ecdsa-secp256k1", aux: tuple[str, int] | None = None) -> None:
        """A new key, pending until committed (its row's ``scheme`` says how it signs);
        ``aux``: (aux_id, cap) of the pooled aux-info it is bound to, counted in the same
        transaction (ConflictError past the cap, nothing stored)."""

    def put_pending_share(self, key_id: str, epoch: int, blob: bytes) -> None:
        """A new epoch's sealed share, pending until committed."""

    def drop_pending_share(self, key_id: str, epoch: int | None = None) -> None:
        """Forget the pending share of a change that did not finish."""

    def abandon_key(self, key_id: str) -> list[str]:
        """Delete a key never in use here; the presignature key labels to destroy."""

    def set_key_status(self, key_id: str, status: str) -> None:
        """This node's status of a key (disable/enable: ``disabled``, ``active``)."""

    def key_versions(self, key_id: str) -> list[dict]:
        """The key's epochs held here with their dates (created, committed, superseded, destroyed)."""


class KeyChangeStore(Protocol):
    """Two-phase key changes: what each party prepared, the coordinator's commit decisions."""

    def prepare(self, key_id: str, job_id: str, kind: str, role: str, new_epoch: int, coordinator: int,
                participants: list[int], threshold: int, fingerprint: str | None = None) -> None:
        """Record what this party commits when told."""

    def pending(self, key_id: str) -> dict | None:
        """The change prepared or committed for a key."""

    def pending_for_job(self, job_id: str) -> dict | None:
        """The change a job prepared."""

    def list_pending(self, state: str = "prepared") -> list[dict]:
        """Changes in this state."""

    def commit_prepared(self, job_id: str) -> dict | None:
        """Put a prepared change in use; None if there is none."""

    def abandon_prepared(self, job_id: str) -> list[str]:
        """Drop what a job prepared; the presignature key labels to destroy."""

    def finalize_key(self, key_id: str, epoch: int) -> list[str]:
        """Every party confirmed ``epoch``: old shares go; the key labels to destroy."""

    def record_commit(self, job_id: str, key_id: str, kind: str, new_epoch: int, parties: list[int],
                      fingerprint: str | None = None) -> None:
        """The coordinator's decision to commit (durable before any party is told), with the
        key state every party reported."""

    def commit_record(self, job_id: str) -> dict | None:
        """The coordinator's decision for a job, or None."""

    def open_commits(self) -> list[dict]:
        """Decisions not yet finalized everywhere."""

    def commit_progress(self, job_id: str, *, acked: list[int] = (),
                        finalized: list[int] = ()) -> dict | None:
        """Note which parties acknowledged or finalized."""


class OperationStore(Protocol):
    """Key operations (create, refresh, reshare, import) and their outcome."""

    def put_operation(self, op_id: str, kind: str, key_id: str | None, actor: str | None,
                      status: str = "running") -> None:
        """A new operation."""

    def finish_operation(self, op_id: str, status: str, result: dict | None = None,
                         error: dict | None = None) -> None:
        """An operation's outcome."""

    def set_operation_running(self, op_id: str, key_id: str | None) -> None:
        """An approved operation starts."""

    def pending_operation_ids(self) -> list[str]:
        """Operations waiting for approvals."""

    def get_operation(self, op_id: str) -> dict | None:
        """One operation, or None."""


class PresignatureStore(Protocol):
    """Sealed presignatures: available -> spent, never backwards."""

    def add_presignature(self, presig_id: bytes, key_id: str, epoch: int, signers: list[int],
                         R: bytes, blob: bytes) -> None:
        """Keep a new sealed presignature."""

    def count_presignatures(self, key_id: str, signers: list[int] | None = None,
                            epoch: int | None = None) -> int:
        """Available presignatures of a key (and signer set, epoch)."""

    def ready_signer_sets(self, key_id: str) -> dict[tuple[int, ...], int]:
        """Available presignatures of a key per signer set."""

    def take_any_presignature(self, key_id: str, signers: list[int], epoch: int) -> Any:
        """Spend one of this set durably (PresignatureUnavailable if none)."""

    def take_presignature(self, presig_id: bytes, *, reserved: bool, key_id: str | None = None,
                          signer_set: list[int] | None = None, epoch: int | None = None) -> Any:
        """Spend this one durably; None if gone or not of that key, set and epoch."""

    def presignature_keys_destroyed(self, labels: list[str]) -> None:
        """Record that these presignature keys are destroyed."""


class FrostNonceStore(Protocol):
    """The FROST nonce pool (:mod:`appliance.storage.frost_nonces`): this node's sealed nonce
    pairs (available -> spent, never backwards) and the other holders' signed commitments."""

    def add_frost_nonce(self, nonce_id: bytes, *, key_id: str, epoch: int, party: int, holder: int, D: bytes,
                        E: bytes, signature: bytes, sealed: bytes, hsm_key_label: str) -> None:
        """Keep a new sealed nonce pair of this node (its commitment goes to ``holder``)."""

    def add_frost_commitments(self, key_id: str, epoch: int, rows: Any) -> int:
        """Keep other holders' checked commitments (repeats ignored)."""

    def count_frost_nonces(self, key_id: str, epoch: int | None = None, *, holder: int | None = None,
                           unpicked: bool = False) -> int:
        """This node's available pairs of a key (for one holder)."""

    def discard_frost_nonce_ids(self, nonce_ids: Any) -> list[str]:
        """Spend these pairs unused (a failed publication); HSM key labels to destroy."""

    def count_frost_commitments(self, key_id: str, epoch: int) -> dict[int, int]:
        """Other holders' available commitments per party."""

    def pick_frost_commitments(self, key_id: str, epoch: int, own: int, parties: Any) -> Any:
        """One pooled commitment per party, marked handed out durably; None if any has none."""

    def take_frost_nonce(self, nonce_id: bytes, *, key_id: str, epoch: int, party: int, D: bytes,
                         E: bytes, holder: int) -> Any:
        """Spend this pair durably (FrostNonceUnavailable if spent, unknown, another's, or
        published to a coordinator other than ``holder``)."""

    def mark_frost_nonce_keys_destroyed(self, labels: Any) -> None:
        """Record that these nonce pairs' HSM keys are destroyed."""


class AuxStore(Protocol):
    """Pooled aux-info per committee (sealed) and each key's binding to one
    (appliance/storage/aux_info.py)."""

    def add_aux(self, aux_id: str, parties: list[int], bits: int, fingerprint: bytes, blob: bytes) -> None:
        """Keep a sealed aux-info of this committee (ConflictError if the id exists)."""

    def get_aux(self, aux_id: str) -> dict | None:
        """``aux_id``, ``parties``, ``bits``, ``fingerprint``, ``sealed``, ``keys_bound``, or None."""

    def usable_aux(self, parties: list[int], bits: int, cap: int) -> list[str]:
        """Ids of this committee's aux-info with room for another key, fullest first."""

    def aux_room(self, parties: list[int], bits: int, cap: int) -> int:
        """Keys this committee's aux-info can still take."""

    def aux_of_key(self, key_id: str) -> str | None:
        """The aux-info a key was made with (None: its own aux session)."""

    def delete_aux(self, aux_id: str) -> None:
        """Drop an aux-info no key is bound to (its session did not finish everywhere)."""


class PrimeStore(Protocol):
    """The sealed prime pool."""

    def add_prime(self, bits: int, blob: bytes) -> None:
        """Keep a sealed prime."""

    def take_prime(self, bits: int) -> tuple[int, bytes] | None:
        """Take one sealed prime (its id and blob), or None."""

    def count_primes(self, bits: int) -> int:
        """Sealed primes of this size."""


class PolicyUpdateStore(Protocol):
    """The chain of policy updates applied here."""

    def add_policy_update(self, policy_hash: str, body: dict) -> None:
        """Keep an applied update."""

    def policy_updates(self) -> list[dict]:
        """Every applied update, oldest first."""


class CertUpdateStore(Protocol):
    """The TLS certificate updates (rotations) applied here, one per version."""

    def add_cert_update(self, version: int, node_id: str, fingerprint: str, body: dict) -> None:
        """Keep an applied update (its version is the next one)."""

    def cert_updates(self) -> list[dict]:
        """Every applied update, by version."""


class ReadScope(NamedTuple):
    """The rows of a listing one person may read, as a query filter (the console: issue 17):
    requests of ``keys`` (None: any key) but not of ``except_keys``, or (``or_initiator``)
    their own; never those of ``not_initiator``."""

    keys: tuple[str, ...] | None = None
    except_keys: tuple[str, ...] = ()
    or_initiator: str | None = None
    not_initiator: str | None = None


class ReplayStore(Protocol):
    """Used job ids, sign-request reservations and request-id claims (durable: never run or sign
    twice, one request per initiator and nonce)."""

    def use_job_id(self, job_id: str) -> bool:
        """Record a job id; False if it was seen before."""

    def job_id_used(self, job_id: str, *, older_than: float = 0.0) -> bool:
        """Was this job id ever run or refused here?"""

    def use_request(self, request_id: str, action: str, key_id: str | None, job_id: str,
                    amounts: dict[str, int] | None = None) -> bool:
        """Mark a request signed here; False if it already was."""

    def request_used(self, request_id: str) -> bool:
        """Was this request signed here?"""

    def mark_request(self, request_id: str, key_id: str, signers: list[int]) -> bool:
        """Reserve a request for one signer set; False if another set holds it."""

    def signatures_since(self, key_id: str, since: float, *, besides: str | None = None) -> int:
        """Reservations of a key since ``since`` (rate limits)."""

    def amounts_since(self, key_id: str, since: float) -> dict[str, int]:
        """Amounts moved per asset since ``since`` (window limits)."""

    def claim_request(self, request_id: str, initiator: str, nonce: str, content: str, owner: int) -> dict:
        """Claim a request id for ``content`` kept by node ``owner`` unless claimed (durable);
        the first claim, ``{content, owner}``."""

    def request_owner(self, request_id: str) -> int | None:
        """The node recorded as keeping a claimed request id (None: no claim recorded here)."""

    def note_assertion(self, credential_id: str, counter: int, assertion_id: str, *,
                       in_order: bool = True) -> bool:
        """Record a passkey assertion seen here (durable). True if it was seen before; else, for
        a counter of 0, if none recorded for the credential is above 0; else, ``in_order`` (a
        decision, posted as the authenticator made it), if it is above every counter recorded,
        or not (a signer, whose jobs may come out of order) if no other assertion had it.
        False: a cloned or replayed authenticator."""


STORE_PORTS: Sequence[type] = (SignRequestStore, StatementStore, KeyStore, KeyChangeStore, OperationStore,
                               PresignatureStore, PrimeStore, PolicyUpdateStore, CertUpdateStore,
                               ReplayStore, AuxStore)
