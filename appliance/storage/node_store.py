"""The node's view of its durable state: one :class:`Database` (one connection) for the
node process, the core :class:`Store` (keys, sealed shares, sealed primes, presignatures,
sign requests) and the repositories the node layer adds (key life cycle, key operations,
sign-request signer sets, policy statements and decisions, policy updates, replay
protection, accepted nonces), behind the method names the node uses.

Key life cycle on a node: a DKG or refresh leaves its result *pending* (the sealed share is
stored, the key or its new epoch is not in use; ``node_pending`` records what it would commit)
until the coordinator has seen every party's matching result, recorded its decision
(``node_commits``) and sends *commit*; old shares stay until every party confirmed and the
coordinator sends *finalize*. A job that does not finish is *abandoned* (its pending share
deleted, the old epoch stays in use). Each of these steps is one transaction.
Every secret is an HSM-sealed blob (the core store refuses anything else).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance.ports import ReadScope
from appliance.sealed import presig_key_label
from appliance.storage.aux_info import AuxInfoRepository
from appliance.storage.database import Database
from appliance.storage.errors import ConflictError, NotFoundError, PresignatureUnavailable
from appliance.storage.keys import KeyStatusRepository, KeyVersionRepository
from appliance.storage.lifecycle import CommitDecisions, PendingChanges
from appliance.storage.nonces import NonceLedger
from appliance.storage.operations import OperationRepository
from appliance.storage.policy_updates import CertUpdateRepository, PolicyUpdateRepository
from appliance.storage.replay import RequestClaims, UsedJobs, UsedRequests
from appliance.storage.sign_requests import RequestSignersRepository
from appliance.storage.statements import StatementRepository
from appliance.storage.store import Store


def _j(v: Any) -> str | None:
    return None if v is None else json.dumps(v, sort_keys=True)


def _uj(v: str | bytes | None) -> Any:
    return None if v is None else json.loads(v)


class NodeStore:
    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        """``clock``: Unix seconds for the rows' timestamps (the node's injected clock)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.database = Database(path, clock=clock)
        db = self.database
        self.core = Store(db)
        self.key_status = KeyStatusRepository(db)
        self.versions = KeyVersionRepository(db)
        self.pending_changes = PendingChanges(db)
        self.commits = CommitDecisions(db)
        self.operations = OperationRepository(db)
        self.request_signers = RequestSignersRepository(db)
        self.statements = StatementRepository(db)
        self.policy_history = PolicyUpdateRepository(db)
        self.cert_history = CertUpdateRepository(db)
        self.used_jobs = UsedJobs(db)
        self.used_requests = UsedRequests(db)
        self.request_claims = RequestClaims(db)
        self.nonces = NonceLedger(db)  # RFC 9421 nonces accepted here, kept across restarts
        self.aux = AuxInfoRepository(db)  # pooled aux-info and key bindings (appliance/storage/aux_info.py)

    def close(self) -> None:
        self.database.close()

    def transaction(self):
        """One write transaction over every repository (and the audit log, which lives here)."""
        return self.database.tx()

    # -- keys -------------------------------------------------------------------------

    def put_pending_key(self, key_id: str, public_key: bytes, threshold: int, participants: list[int],
                        epoch: int, bits: int, blob: bytes, chain_code: bytes,
                        scheme: str = "ecdsa-secp256k1", aux: tuple[str, int] | None = None) -> None:
        """``public_key``: SEC1 compressed for ECDSA; for a FROST key its group element as
        the ciphersuite encodes it (33-byte SEC1 P for BIP340, 32 bytes for Ed25519); a FROST
        key has no Paillier modulus (``bits`` 0) and no chain code (empty). ``aux``: (aux_id,
        cap) of the pooled aux-info the share was bound to, counted in the same transaction
        (ConflictError past the cap: nothing is stored)."""
        with self.database.tx():
            if aux is not None:
                self.aux.bind_aux(key_id, aux[0], aux[1])
            self.core.put_key(key_id, threshold=threshold, participants=participants,
                              public_key=public_key, chain_code=chain_code, epoch=epoch)
            self.core.put_sealed_secrets(key_id, epoch, {"share": blob})
            self.key_status.add(key_id, "pending", bits, scheme)
            self.versions.created(key_id, epoch)

    # -- pooled aux-info (appliance.ports.AuxStore) ---------------------------------------

    def add_aux(self, aux_id: str, parties: list[int], bits: int, fingerprint: bytes, blob: bytes) -> None:
        self.aux.add_aux(aux_id, parties, bits, fingerprint, blob)

    def get_aux(self, aux_id: str) -> dict | None:
        return self.aux.get_aux(aux_id)

    def usable_aux(self, parties: list[int], bits: int, cap: int) -> list[str]:
        return self.aux.usable_aux(parties, bits, cap)

    def aux_room(self, parties: list[int], bits: int, cap: int) -> int:
        return self.aux.aux_room(parties, bits, cap)

    def aux_of_key(self, key_id: str) -> str | None:
        return self.aux.aux_of_key(key_id)

    def delete_aux(self, aux_id: str) -> None:
        self.aux.delete_aux(aux_id)

    def set_key_status(self, key_id: str, status: str) -> None:
        self.key_status.set_status(key_id, status)

    def put_pending_share(self, key_id: str, epoch: int, blob: bytes) -> None:
        """The sealed share of a refresh/reshare's new epoch, not in use until committed."""
        with self.database.tx():
            try:
                self.core.put_sealed_secrets(key_id, epoch, {"share": blob})
            except ConflictError:
                # left over from a key change to this epoch that did not finish: never in use
                prepared = self.pending(key_id)
                if (self.core.get_key(key_id).epoch >= epoch
                        or (prepared is not None and prepared["state"] == "prepared")):
                    raise
                self.core.delete_sealed_secrets(key_id, epoch=epoch)
                self.core.put_sealed_secrets(key_id, epoch, {"share": blob})
            self.key_status.set_pending_epoch(key_id, epoch)
            self.versions.created(key_id, epoch)

    # -- two-phase key changes: prepare -> commit -> finalize (or abandon) -------------

    def prepare(self, key_id: str, job_id: str, kind: str, role: str, new_epoch: int, coordinator: int,
                participants: list[int], threshold: int, fingerprint: str | None = None) -> None:
        """Record (fsynced) what this party commits when the coordinator says so: ``role`` is
        ``new`` (the key was not held here: its pending key becomes active), ``member`` (the
        pending share of ``new_epoch`` becomes the key's share), ``leaver`` (the key stops
        being usable here) or ``delete`` (the key is *deleting* now, refused for signing; the
        commit destroys its sealed shares and presignatures; ``fingerprint`` holds the status
        an abandoned delete goes back to)."""
        with self.database.tx():
            self.pending_changes.prepare(key_id, job_id, kind, role, new_epoch, coordinator,
                                         participants, threshold, fingerprint)
            if role == "delete":
                self.key_status.set_status(key_id, "deleting")

    def pending(self, key_id: str) -> dict | None:
        return self.pending_changes.for_key(key_id)

    def pending_for_job(self, job_id: str) -> dict | None:
        return self.pending_changes.for_job(job_id)

    def list_pending(self, state: str = "prepared") -> list[dict]:
        return self.pending_changes.with_state(state)

    def commit_prepared(self, job_id: str) -> dict | None:
        """Put the prepared change of ``job_id`` in use (old shares stay until finalize);
        returns the pending record, or None if there is none (already committed/abandoned)."""
        with self.database.tx():
            p = self.pending_for_job(job_id)
            if p is None or p["state"] != "prepared":
                return None
            key_id = p["key_id"]
            if p["role"] == "new":
                self.key_status.set_status(key_id, "active")
                self.versions.committed(key_id, p["new_epoch"])
            elif p["role"] == "member":
                rec = self.core.get_key(key_id)
                if rec.epoch < p["new_epoch"]:
                    self.core.set_key_epoch(key_id, p["new_epoch"], expected=rec.epoch,
                                            participants=p["participants"], threshold=p["threshold"])
                self.key_status.set_status(key_id, "active", clear_pending_epoch=True)
                self.versions.committed(key_id, p["new_epoch"])
            elif p["role"] == "delete":  # every sealed share and presignature of the key goes
                self.core.delete_sealed_secrets(key_id, before_epoch=2**62)
                p["destroy_labels"] = (self.core.discard_presignatures(key_id)
                                       + self.core.discard_frost_nonces(key_id))
                self.key_status.set_status(key_id, "deleted", clear_pending_epoch=True)
                self.versions.superseded(key_id)
                self.versions.destroyed(key_id)
            else:
                self.versions.superseded(key_id)
                self.key_status.set_status(key_id, "retired", clear_pending_epoch=True)
            # kept (committed) until the coordinator's finalize, which only it may send
            self.pending_changes.set_committed(job_id)
            return p

    def abandon_prepared(self, job_id: str) -> list[str]:
        """The change of ``job_id`` will not happen: drop what it prepared (the old epoch stays
        in use). Returns HSM key labels of presignatures to destroy."""
        with self.database.tx():
            p = self.pending_for_job(job_id)
            if p is None or p["state"] != "prepared":
                return []
            labels: list[str] = []
            if p["role"] == "new":
                labels = self.abandon_key(p["key_id"])
            elif p["role"] == "member":
                self.drop_pending_share(p["key_id"], p["new_epoch"])
                self.versions.dropped(p["key_id"], p["new_epoch"])
            elif p["role"] == "delete":  # the status it had before
                self.key_status.set_status(p["key_id"], p["fingerprint"] or "active")
            self.pending_changes.delete_job(job_id)
            return labels

    def finalize_key(self, key_id: str, epoch: int) -> list[str]:
        """Every party confirmed ``epoch``: destroy this node's sealed shares of earlier epochs
        (all of them where this node left the committee) and discard older presignatures.
        Idempotent; does nothing before this node committed. Returns HSM key labels to destroy."""
        with self.database.tx():
            try:
                rec = self.core.get_key(key_id)
            except NotFoundError:
                return []
            retired = self.key_status.status(key_id) == "retired"
            if not retired and rec.epoch < epoch:
                return []
            self.core.delete_sealed_secrets(key_id, before_epoch=epoch)
            self.versions.destroyed(key_id, before_epoch=None if retired else epoch)
            self.pending_changes.delete_committed(key_id, epoch)
            before = None if retired else epoch
            return (self.core.discard_presignatures(key_id, before_epoch=before)
                    + self.core.discard_frost_nonces(key_id, before_epoch=before))

    def abandon_key(self, key_id: str) -> list[str]:
        """A key that never came into use here (unfinished DKG, import, or reshare to this node):
        deleted with its sealed share. Returns HSM key labels of presignatures to destroy."""
        with self.database.tx():
            if self.key_status.status(key_id) not in ("pending", "abandoned"):
                return []
            try:
                labels = self.core.delete_key(key_id)
            except NotFoundError:
                labels = []
            except ConflictError:  # pragma: no cover - a pending key has no sign requests
                self.key_status.set_status(key_id, "abandoned")
                return []
            self.key_status.delete(key_id)
            return labels

    def drop_pending_share(self, key_id: str, epoch: int | None = None) -> None:
        """Forget the pending share of a refresh/reshare that did not finish."""
        with self.database.tx():
            pend = epoch if epoch is not None else self.key_status.pending_epoch(key_id)
            if pend is not None:
                try:
                    if self.core.get_key(key_id).epoch < pend:
                        self.core.delete_sealed_secrets(key_id, epoch=pend)
                except NotFoundError:
                    pass
            self.key_status.set_pending_epoch(key_id, None)

    # -- the coordinator's commit decisions --------------------------------------------

    def record_commit(self, job_id: str, key_id: str, kind: str, new_epoch: int, parties: list[int],
                      fingerprint: str | None = None) -> None:
        """The coordinator's decision to commit (fsynced before any party is told), with the
        key state every party reported (each party compares it with the one it prepared)."""
        self.commits.record(job_id, key_id, kind, new_epoch, parties, fingerprint)

    def commit_record(self, job_id: str) -> dict | None:
        return self.commits.get(job_id)

    def open_commits(self) -> list[dict]:
        return self.commits.open()

    def commit_progress(self, job_id: str, *, acked: list[int] = (), finalized: list[int] = ()) -> dict | None:
        return self.commits.progress(job_id, acked=acked, finalized=finalized)

    def get_key(self, key_id: str) -> dict | None:
        try:
            rec = self.core.get_key(key_id)
        except NotFoundError:
            return None
        return self._key_dict(rec, self.key_status.meta(key_id))

    def key_versions(self, key_id: str) -> list[dict]:
        """The key's epochs held here, with their dates (kept after a delete)."""
        return self.versions.of(key_id)

    def share_blob(self, key_id: str, epoch: int) -> bytes:
        return self.core.get_sealed_secret(key_id, epoch, "share")

    def list_keys(self, status: str | None = "active") -> list[dict]:
        meta = self.key_status.all_meta()
        out = [self._key_dict(rec, meta.get(rec.key_id)) for rec in self.core.list_keys()]
        return [k for k in out if status is None or k["status"] == status]

    def page_keys(self, status: str | tuple[str, ...] | None, after: tuple[float, str] | None,
                  limit: int) -> list[dict]:
        recs = self.core.page_keys(status=status, after=after, limit=limit)
        meta = self.key_status.all_meta()
        return [self._key_dict(rec, meta.get(rec.key_id)) for rec in recs]

    @staticmethod
    def _key_dict(rec, meta: tuple[str, int, str] | None) -> dict:
        return {"key_id": rec.key_id, "public_key": rec.public_key, "threshold": rec.threshold,
                "participants": list(rec.participants), "epoch": rec.epoch, "chain_code": rec.chain_code,
                "created": rec.created_at, "status": meta[0] if meta else "unknown",
                "paillier_bits": meta[1] if meta else 0, "scheme": meta[2] if meta else "ecdsa-secp256k1"}

    # -- operations -------------------------------------------------------------------

    def put_operation(self, op_id: str, kind: str, key_id: str | None, actor: str | None,
                      status: str = "running") -> None:
        self.operations.put(op_id, kind, key_id, actor, status)

    def finish_operation(self, op_id: str, status: str, result: dict | None = None,
                         error: dict | None = None) -> None:
        self.operations.finish(op_id, status, result, error)

    def set_operation_running(self, op_id: str, key_id: str | None) -> None:
        self.operations.set_running(op_id, key_id)

    def pending_operation_ids(self) -> list[str]:
        return self.operations.pending_ids()

    def get_operation(self, op_id: str) -> dict | None:
        return self.operations.get(op_id)

    def recover_after_restart(self, why: dict) -> None:
        """What was running when the node stopped did not finish."""
        with self.database.tx():
            self.operations.fail_running(why)
            for req in self.core.list_sign_requests(status="signing"):
                self.core.update_sign_request(req.request_id, status="failed", error=_j(why))
            # prepared key changes (node_pending) stay: the node asks their coordinator whether
            # they were committed; anything else pending did not finish
            prepared = {p["key_id"] for p in self.pending_changes.with_state("prepared")}
            for key_id in self.key_status.with_status("pending"):
                if key_id not in prepared:
                    self.abandon_key(key_id)
            for key_id, epoch in self.key_status.with_pending_epoch():
                if key_id not in prepared:
                    self.drop_pending_share(key_id, epoch)

    # -- sign requests ----------------------------------------------------------------

    def put_sign_request(self, request_id: str, key_id: str, digest: bytes | None, path: str | None,
                         initiator: str, signers: list[str] | None, *, payload: Any = None,
                         payload_type: str | None = None, request: dict | None = None,
                         status: str = "signing") -> None:
        """A new sign request (``payload``: as sent, stored as JSON; ``request``: the signed
        statement); ``status`` pending (waiting for approvals) or signing."""
        with self.database.tx():
            self.core.create_sign_request(
                request_id, key_id=key_id, initiator=initiator, digest=digest, derivation_path=path,
                payload=None if payload is None else json.dumps(payload).encode(),
                payload_type=payload_type,
                request=None if request is None else json.dumps(request).encode())
            self.request_signers.add(request_id, signers)
            if status != "pending":
                self.core.update_sign_request(request_id, status=status, expected_status="pending")

    def update_sign_request(self, request_id: str, *, status: str, signers: list[str] | None = None,
                            signature: dict | None = None, error: dict | None = None) -> None:
        with self.database.tx():
            if signers is not None:
                self.request_signers.set(request_id, signers)
            self.core.update_sign_request(
                request_id, status=status,
                result=None if signature is None else json.dumps(signature).encode(),
                error=_j(error))

    def move_sign_request(self, request_id: str, *, status: str, expected_status: str,
                          error: dict | None = None) -> None:
        """Set the status only if it is still ``expected_status`` (ConflictError if not)."""
        self.core.update_sign_request(request_id, status=status, expected_status=expected_status,
                                      error=_j(error))

    def note_presignature(self, request_id: str, presig_id: bytes) -> None:
        """Record which stored presignature the request's signature used."""
        self.core.note_presignature(request_id, presig_id)

    def get_sign_request(self, request_id: str) -> dict | None:
        try:
            r = self.core.get_sign_request(request_id)
        except NotFoundError:
            return None
        return self._req_dict(r)

    def list_sign_requests(self, statuses: tuple[str, ...]) -> list[dict]:
        out = []
        for st in statuses:
            out += [self._req_dict(r) for r in self.core.list_sign_requests(status=st)]
        return sorted(out, key=lambda d: d["created"])

    def page_sign_requests(self, statuses: tuple[str, ...] | None, key_id: str | None, initiator: str | None,
                           created_after: float | None, created_before: float | None,
                           after: tuple[float, str] | None, limit: int, scope: ReadScope | None = None) -> list[dict]:
        return [self._req_dict(r) for r in self.core.page_sign_requests(
            statuses=statuses, key_id=key_id, initiator=initiator, created_after=created_after,
            created_before=created_before, after=after, limit=limit, scope=scope)]

    def _req_dict(self, r) -> dict:
        return {"request_id": r.request_id, "key_id": r.key_id, "digest": r.digest,
                "derivation_path": r.derivation_path, "initiator": r.initiator, "status": r.status,
                "signers": self.request_signers.get(r.request_id),
                "signature": _uj(r.result), "error": _uj(r.error),
                "presignature": r.presig_id.hex() if r.presig_id else None,
                "created": r.created_at, "updated": r.updated_at}

    # -- presignatures ----------------------------------------------------------------

    def add_presignature(self, presig_id: bytes, key_id: str, epoch: int, signers: list[int],
                         R: bytes, blob: bytes) -> None:
        self.core.add_presignature(presig_id, key_id=key_id, epoch=epoch, signer_set=signers, R=R,
                                   sealed=blob, hsm_key_label=presig_key_label(presig_id))

    def count_presignatures(self, key_id: str, signers: list[int] | None = None, epoch: int | None = None) -> int:
        return self.core.count_presignatures(key_id, signers, epoch=epoch)

    def ready_signer_sets(self, key_id: str) -> dict[tuple[int, ...], int]:
        out: dict[tuple[int, ...], int] = {}
        for rec in self.core.list_presignatures(key_id, state="available"):
            out[tuple(rec.signer_set)] = out.get(tuple(rec.signer_set), 0) + 1
        return out

    def take_any_presignature(self, key_id: str, signers: list[int], epoch: int):
        """Pick one available presignature of this signer set and spend it (durably)."""
        return self.core.take_presignature(key_id, signers, epoch=epoch)

    def take_presignature(self, presig_id: bytes, *, reserved: bool, key_id: str | None = None,
                          signer_set: list[int] | None = None, epoch: int | None = None):
        """Spend it durably (mine: reserved by this node; a peer's job: by id, and only if it is
        of ``key_id``/``signer_set``/``epoch`` when given); None if gone or not that one."""
        try:
            if reserved:
                return self.core.spend_reserved(presig_id)
            return self.core.take_presignature_by_id(presig_id, key_id=key_id, signer_set=signer_set,
                                                     epoch=epoch)
        except PresignatureUnavailable:
            return None

    def presignature_keys_destroyed(self, labels: list[str]) -> None:
        """Record destroyed single-use keys: presignatures' and FROST nonce pairs', in one
        transaction (one commit, not one per table); nothing to record: no transaction."""
        if not labels:
            return
        with self.core.db.tx():
            self.core.mark_presignature_keys_destroyed(labels)
            self.core.mark_frost_nonce_keys_destroyed(labels)

    # -- the FROST nonce pool (appliance/storage/frost_nonces.py) -----------------------
    def add_frost_nonce(self, nonce_id: bytes, *, key_id: str, epoch: int, party: int, holder: int, D: bytes,
                        E: bytes, signature: bytes, sealed: bytes, hsm_key_label: str) -> None:
        self.core.add_frost_nonce(nonce_id, key_id=key_id, epoch=epoch, party=party, holder=holder, D=D, E=E,
                                  signature=signature, sealed=sealed, hsm_key_label=hsm_key_label)

    def add_frost_commitments(self, key_id: str, epoch: int, rows: Any) -> int:
        return self.core.add_frost_commitments(key_id, epoch, rows)

    def count_frost_nonces(self, key_id: str, epoch: int | None = None, *, holder: int | None = None,
                           unpicked: bool = False) -> int:
        return self.core.count_frost_nonces(key_id, epoch, holder=holder, unpicked=unpicked)

    def count_frost_commitments(self, key_id: str, epoch: int) -> dict[int, int]:
        return self.core.count_frost_commitments(key_id, epoch)

    def pick_frost_commitments(self, key_id: str, epoch: int, own: int, parties: Any) -> Any:
        return self.core.pick_frost_commitments(key_id, epoch, own, parties)

    def take_frost_nonce(self, nonce_id: bytes, *, key_id: str, epoch: int, party: int, D: bytes,
                         E: bytes, holder: int) -> Any:
        return self.core.take_frost_nonce(nonce_id, key_id=key_id, epoch=epoch, party=party, D=D, E=E,
                                          holder=holder)

    def discard_frost_nonce_ids(self, nonce_ids: Any) -> list[str]:
        return self.core.discard_frost_nonce_ids(nonce_ids)

    def mark_frost_nonce_keys_destroyed(self, labels: Any) -> None:
        self.core.mark_frost_nonce_keys_destroyed(labels)

    # -- primes (safe primes; a safe prime also serves as a Blum prime) ----------------

    def add_prime(self, bits: int, blob: bytes) -> None:
        self.core.add_sealed_primes(bits, [blob])

    def take_prime(self, bits: int) -> tuple[int, bytes] | None:
        return self.core.take_sealed_prime(bits)

    def count_primes(self, bits: int) -> int:
        return self.core.count_sealed_primes(bits)

    # -- policy: statements, decisions, updates ---------------------------------------

    def put_statement(self, request_id: str, subject: str, action: str, key_id: str | None,
                      request: dict, *, payload: Any = None, network: str | None = None,
                      decoded: dict | None = None) -> None:
        self.statements.put(request_id, subject, action, key_id, request, payload=payload,
                            network=network, decoded=decoded)

    def get_statement(self, request_id: str) -> dict | None:
        return self.statements.get(request_id)

    def set_statement_final(self, request_id: str, final: str) -> None:
        self.statements.set_final(request_id, final)

    def add_decision(self, request_id: str, approver: str, decision: str, approval: dict) -> bool:
        """Record one person's signed decision; False if they already decided."""
        return self.statements.add_decision(request_id, approver, decision, approval)

    def decisions(self, request_id: str) -> list[dict]:
        return self.statements.decisions(request_id)

    def last_approvals(self, exclude_request: str) -> list[dict]:
        """Approvals recorded for the most recent other request (used by a test-only fault)."""
        other = self.statements.last_approved_request(exclude_request)
        return self.decisions(other) if other else []

    def add_policy_update(self, policy_hash: str, body: dict) -> None:
        self.policy_history.add(policy_hash, body)

    def policy_updates(self) -> list[dict]:
        return self.policy_history.all()

    def add_cert_update(self, version: int, node_id: str, fingerprint: str, body: dict) -> None:
        self.cert_history.add(version, node_id, fingerprint, body)

    def cert_updates(self) -> list[dict]:
        return self.cert_history.all()

    # -- replay and double-signing protection (fsynced) -------------------------------

    def use_job_id(self, job_id: str) -> bool:
        """Record a job id durably; False if it was ever seen before (never run a session twice)."""
        return self.used_jobs.use(job_id)

    def job_id_used(self, job_id: str, *, older_than: float = 0.0) -> bool:
        """Was this job id ever run or refused here (at least ``older_than`` seconds ago)?"""
        return self.used_jobs.used(job_id, older_than=older_than)

    def use_request(self, request_id: str, action: str, key_id: str | None, job_id: str,
                    amounts: dict[str, int] | None = None) -> bool:
        """Mark a request as signed here (with the amounts it moves, for window limits) in one
        fsynced transaction; False if it already was (a signer takes part once per request)."""
        return self.used_requests.use(request_id, action, key_id, job_id, amounts)

    def request_used(self, request_id: str) -> bool:
        return self.used_requests.used(request_id)

    def mark_request(self, request_id: str, key_id: str, signers: list[int]) -> bool:
        """Reserve a sign request for one signer set (fsynced). True if it now is, or already
        was, reserved for exactly that set; False if another set holds it."""
        return self.used_requests.mark(request_id, key_id, signers)

    def signatures_since(self, key_id: str, since: float, *, besides: str | None = None) -> int:
        """Sign requests of the key reserved since ``since`` (``besides``: not counting that
        request, the one being decided): each counts once, on every holder that recorded its
        reservation, whether or not this node signed it."""
        return self.used_requests.marked_since(key_id, since, besides=besides)

    def amounts_since(self, key_id: str, since: float) -> dict[str, int]:
        return self.used_requests.amounts_since(key_id, since)

    def claim_request(self, request_id: str, initiator: str, nonce: str, content: str, owner: int) -> dict:
        """Claim a request id (one per initiator and nonce) for ``content``, kept by node
        ``owner``, unless it is claimed (fsynced). The first claim: ``{content, owner}``."""
        return self.request_claims.claim(request_id, initiator, nonce, content, owner)

    def request_owner(self, request_id: str) -> int | None:
        return self.request_claims.owner(request_id)

    def note_assertion(self, credential_id: str, counter: int, assertion_id: str, *,
                       in_order: bool = True) -> bool:
        """Record a passkey assertion (fsynced); see :class:`appliance.ports.ReplayStore`."""
        return self.used_requests.note_assertion(credential_id, counter, assertion_id, in_order=in_order)
