"""Fakes of the ports services depend on (:mod:`appliance.ports`; no sockets, HSM or
SQLite): a clock tests move, an audit log in a list, stores in dicts, an HSM that "seals" by
wrapping, peers that answer from a function. ``tests/node/test_ports.py`` checks that each fake
has every member of its port with a compatible signature, as the production adapter does."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import os
import time
import types
from typing import Any, Callable, Mapping

from api.auth import generate_user_key
from appliance.faults import NO_FAULTS
from appliance.policy import default_policy, make_approval, make_request
from appliance.policy.model import ApprovalGroup
from appliance.ports import Opened, ReadScope
from appliance.runtime import Waiters
from appliance.sealed import SealContext
from appliance.storage import ConflictError, PresignatureUnavailable
from appliance.transport import PeerError
from appliance.tss.protocol import IdentityDirectory, SoftwareSigner
from hsm.errors import HSMIntegrityError


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.t = now

    def now(self) -> float:
        return self.t


class FakeEvents:
    def __init__(self) -> None:
        self.seen: list[tuple[str, dict]] = []

    def emit(self, event: str, **fields: Any) -> None:
        self.seen.append((event, fields))


class FakeProgress:
    """A ProgressSink that keeps every report: (phase, done, total, detail)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, int, str | None]] = []

    def report(self, spec: Mapping[str, Any], phase: str, done: int, total: int,
               detail: str | None = None) -> None:
        self.seen.append((phase, done, total, detail))


class FakeAudit:
    """AuditSink and CheckpointLog: entries in a list; a checkpoint is the entry count."""

    def __init__(self) -> None:
        self.entries: list[dict] = []
        self.cps: list = []
        self.cosigned: list[tuple] = []
        self.witnessed: list = []

    def append(self, actor: str | None, action: str, *, key: str | None = None,
               subject: str | None = None, digest: bytes | str | None = None,
               decision: str | None = None, reason: str | None = None,
               request_id: str | None = None) -> Any:
        entry = {"actor": actor, "action": action, "key": key, "subject": subject, "digest": digest,
                 "decision": decision, "reason": reason}
        if request_id is not None:
            entry["request_id"] = request_id
        self.entries.append(entry)
        return entry

    def record(self, actor: str | None, action: str, *, key_id: str | None = None,
               subject: str | None = None, digest: bytes | str | None = None,
               decision: str | None = None, reason: str | None = None,
               request_id: str | None = None) -> Any:
        entry = {"actor": actor, "action": action, "key_id": key_id, "subject": subject, "digest": digest,
                 "decision": decision, "reason": reason}
        if request_id is not None:
            entry["request_id"] = request_id
        self.entries.append(entry)
        return entry

    def checkpoints(self, since: int = 0) -> list:
        return [cp for cp in self.cps if cp.seq > since]

    def checkpoint(self) -> Any:
        if self.cps and self.cps[-1].seq == len(self.entries):
            return None
        cp = types.SimpleNamespace(seq=len(self.entries), cosignatures={}, to_json=lambda: {})
        self.cps.append(cp)
        return cp

    def add_cosignature(self, seq: int, node: str, signature: bytes, node_keys) -> Any:
        self.cosigned.append((seq, node, signature))

    def witness(self, checkpoint: Any, node_keys) -> bytes:
        self.witnessed.append(checkpoint)
        return b"\x00" * 64


class FakeMetrics:
    def __init__(self) -> None:
        self.counted: list[tuple] = []

    def __getattr__(self, name: str):
        return lambda *a, **kw: self.counted.append((name, *a))


class FakeSealer:
    """Sealer: a blob is the context and the plaintext side by side (tests only need the
    binding); presignature keys are a set of labels; signatures by a software identity key."""

    def __init__(self, signer: SoftwareSigner | None = None) -> None:
        self.signer = signer or SoftwareSigner(b"\x01" * 32)
        self.blobs: dict[bytes, tuple[SealContext, bytes]] = {}
        self.presig_keys: set[str] = set()
        self.envelopes: dict[bytes, bytes] = {}  # what transport_decrypt opens
        self.healthy = True

    async def seal_async(self, context: SealContext, plaintext: bytes) -> bytes:
        blob = os.urandom(16)
        self.blobs[blob] = (context, plaintext)
        return blob

    async def unseal_async(self, context: SealContext, blob: bytes) -> bytes:
        ctx, plaintext = self.blobs.get(blob, (None, b""))
        if ctx != context:
            raise HSMIntegrityError("not sealed under this context (fake)")
        return plaintext

    async def seal_presignature_async(self, context: SealContext, plaintext: bytes) -> bytes:
        blob = await self.seal_async(context, plaintext)
        self.presig_keys.add(blob.hex())
        return blob

    async def consume_presignature_async(self, context: SealContext, blob: bytes) -> bytes:
        out = await self.unseal_async(context, blob)
        self.presig_keys.discard(blob.hex())
        del self.blobs[blob]
        return out

    async def destroy_presignature_key_async(self, label: str) -> bool:
        had = label in self.presig_keys
        self.presig_keys.discard(label)
        return had

    async def sign_digest_async(self, digest: bytes) -> bytes:
        return self.signer.sign(digest)

    async def transport_decrypt_async(self, envelope: bytes, *, context: bytes = b"") -> bytes:
        return self.envelopes[envelope]

    def health(self) -> bool:
        return self.healthy


class FakePeers:
    """PeerLink: ``answer(peer, method, path, json_body)`` gives the body or raises; every
    request is kept in ``sent``. By default a peer is unreachable."""

    def __init__(self, answer: Callable[..., Any] | None = None) -> None:
        self.answer = answer
        self.sent: list[tuple] = []

    async def request(self, peer: Any, method: str, path: Any, *, json_body: Any = None,
                      data: bytes | None = None, content_type: str | None = None,
                      timeout: float = 10.0, pool: str = "protocol") -> Any:
        self.sent.append((peer.id, method, str(path), json_body))
        if self.answer is None:
            raise PeerError(peer, "unreachable (fake)")
        return self.answer(peer, method, path, json_body)


class FakeStore:
    """SignRequestStore and StatementStore: the sign-request rows (status, error, signers) and
    the statements and decisions, in dicts, with the store's compare-and-set."""

    def __init__(self) -> None:
        self.requests: dict[str, dict] = {}
        self.statements: dict[str, dict] = {}
        self.decided: dict[str, dict[str, dict]] = {}  # request id -> approver -> signed decision
        self.presigs_used: dict[str, bytes] = {}

    # Transactions
    def transaction(self) -> contextlib.AbstractContextManager:
        """(no rollback in the fake: tests/node/test_audit_together.py uses a real database)"""
        return contextlib.nullcontext()

    # SignRequestStore
    def put_sign_request(self, request_id: str, key_id: str, digest: bytes | None, path: str | None,
                         initiator: str, signers: list[str] | None, *, payload: Any = None,
                         payload_type: str | None = None, request: dict | None = None,
                         status: str = "signing") -> None:
        if request_id in self.requests:
            raise ConflictError(f"{request_id} exists")
        self.requests[request_id] = {"request_id": request_id, "key_id": key_id, "digest": digest,
                                     "derivation_path": path, "initiator": initiator, "status": status,
                                     "signers": signers, "signature": None, "error": None,
                                     "created": time.time(), "updated": time.time()}

    def update_sign_request(self, request_id: str, *, status: str, signers: list[str] | None = None,
                            signature: dict | None = None, error: dict | None = None) -> None:
        row = self.requests[request_id]
        row["status"] = status
        if signers is not None:
            row["signers"] = signers
        if signature is not None:
            row["signature"] = signature
        if error is not None:
            row["error"] = error

    def move_sign_request(self, request_id: str, *, status: str, expected_status: str,
                          error: dict | None = None) -> None:
        row = self.requests[request_id]
        if row["status"] != expected_status:
            raise ConflictError(f"{request_id} is {row['status']}")
        row["status"] = status
        if error is not None:
            row["error"] = error

    def note_presignature(self, request_id: str, presig_id: bytes) -> None:
        self.presigs_used[request_id] = presig_id

    def get_sign_request(self, request_id: str) -> dict | None:
        row = self.requests.get(request_id)
        return None if row is None else dict(row)

    def list_sign_requests(self, statuses: tuple[str, ...]) -> list[dict]:
        return [dict(r) for r in self.requests.values() if r["status"] in statuses]

    def page_sign_requests(self, statuses: tuple[str, ...] | None, key_id: str | None, initiator: str | None,
                           created_after: float | None, created_before: float | None,
                           after: tuple[float, str] | None, limit: int, scope: ReadScope | None = None) -> list[dict]:
        def shown(r: dict) -> str:
            st = self.statements.get(r["request_id"])
            return (st or {}).get("final") or r["status"]

        def readable(r: dict) -> bool:  # ReadScope as the SQL filter reads it
            if scope is None:
                return True
            if scope.not_initiator is not None and r["initiator"] == scope.not_initiator:
                return False
            by_key = (scope.keys is None or r["key_id"] in scope.keys) and r["key_id"] not in scope.except_keys
            return by_key or (scope.or_initiator is not None and r["initiator"] == scope.or_initiator)

        rows = [r for r in self.requests.values()
                if (statuses is None or shown(r) in statuses)
                and key_id in (None, r["key_id"]) and initiator in (None, r["initiator"])
                and (created_after is None or r["created"] > created_after)
                and (created_before is None or r["created"] < created_before)
                and (after is None or (r["created"], r["request_id"]) < after) and readable(r)]
        rows.sort(key=lambda r: (r["created"], r["request_id"]), reverse=True)
        return [dict(r) for r in rows[:limit]]

    # StatementStore
    def put_statement(self, request_id: str, subject: str, action: str, key_id: str | None,
                      request: dict, *, payload: Any = None, network: str | None = None,
                      decoded: dict | None = None) -> None:
        self.statements[request_id] = {"request_id": request_id, "subject": subject, "action": action,
                                       "key_id": key_id, "request": request, "payload": payload,
                                       "network": network, "decoded": decoded, "final": None}

    def get_statement(self, request_id: str) -> dict | None:
        return self.statements.get(request_id)

    def set_statement_final(self, request_id: str, final: str) -> None:
        self.statements[request_id]["final"] = final

    def add_decision(self, request_id: str, approver: str, decision: str, approval: dict) -> bool:
        got = self.decided.setdefault(request_id, {})
        if approver in got:
            return False
        got[approver] = approval
        return True

    def decisions(self, request_id: str) -> list[dict]:
        return list(self.decided.get(request_id, {}).values())

    def last_approvals(self, exclude_request: str) -> list[dict]:
        others = [rid for rid in self.decided if rid != exclude_request]
        return self.decisions(others[-1]) if others else []


class FakeKeys:
    """KeyStore: key rows and sealed shares in dicts."""

    def __init__(self) -> None:
        self.rows: dict[str, dict] = {}
        self.shares: dict[tuple[str, int], bytes] = {}

    def get_key(self, key_id: str) -> dict | None:
        row = self.rows.get(key_id)
        return None if row is None else dict(row)

    def list_keys(self, status: str | None = "active") -> list[dict]:
        return [dict(r) for r in self.rows.values() if status is None or r["status"] == status]

    def page_keys(self, status: str | tuple[str, ...] | None, after: tuple[float, str] | None,
                  limit: int) -> list[dict]:
        statuses = (status,) if isinstance(status, str) else status
        rows = sorted((r for r in self.list_keys(None) if (statuses is None or r["status"] in statuses)
                       and (after is None or (r["created"], r["key_id"]) > after)),
                      key=lambda r: (r["created"], r["key_id"]))
        return rows[:limit]

    def share_blob(self, key_id: str, epoch: int) -> bytes:
        return self.shares[(key_id, epoch)]

    def set_key_status(self, key_id: str, status: str) -> None:
        self.rows[key_id]["status"] = status

    def key_versions(self, key_id: str) -> list[dict]:
        return [{"epoch": epoch, "created": 0.0, "committed": None, "superseded": None, "destroyed": None}
                for (kid, epoch) in sorted(self.shares) if kid == key_id]

    def put_pending_key(self, key_id: str, public_key: bytes, threshold: int, participants: list[int],
                        epoch: int, bits: int, blob: bytes, chain_code: bytes,
                        scheme: str = "ecdsa-secp256k1", aux: tuple[str, int] | None = None) -> None:
        self.aux_bound = aux  # (the fake keeps no aux-info: FakeAux does)
        self.rows[key_id] = {"key_id": key_id, "public_key": public_key, "threshold": threshold,
                             "participants": list(participants), "epoch": epoch, "chain_code": chain_code,
                             "created": time.time(), "status": "pending", "paillier_bits": bits,
                             "scheme": scheme}
        self.shares[(key_id, epoch)] = blob

    def put_pending_share(self, key_id: str, epoch: int, blob: bytes) -> None:
        self.shares[(key_id, epoch)] = blob

    def drop_pending_share(self, key_id: str, epoch: int | None = None) -> None:
        row = self.rows.get(key_id)
        for k, e in [k for k in self.shares if k[0] == key_id]:
            if (epoch is None or e == epoch) and (row is None or e > row["epoch"]):
                del self.shares[(k, e)]

    def abandon_key(self, key_id: str) -> list[str]:
        row = self.rows.get(key_id)
        if row is None or row["status"] not in ("pending", "abandoned"):
            return []
        del self.rows[key_id]
        for k in [k for k in self.shares if k[0] == key_id]:
            del self.shares[k]
        return []


class FakeKeyChanges:
    """KeyChangeStore: prepared changes and commit decisions in dicts (``keys``: the FakeKeys
    a commit changes)."""

    def __init__(self, keys: FakeKeys | None = None) -> None:
        self.keys = keys or FakeKeys()
        self.prepared: dict[str, dict] = {}  # job id -> pending record
        self.commits: dict[str, dict] = {}

    def prepare(self, key_id: str, job_id: str, kind: str, role: str, new_epoch: int, coordinator: int,
                participants: list[int], threshold: int, fingerprint: str | None = None) -> None:
        self.prepared[job_id] = {"key_id": key_id, "job_id": job_id, "kind": kind, "role": role,
                                 "new_epoch": new_epoch, "coordinator": coordinator,
                                 "participants": list(participants), "threshold": threshold,
                                 "fingerprint": fingerprint, "state": "prepared"}

    def pending(self, key_id: str) -> dict | None:
        return next((dict(p) for p in self.prepared.values() if p["key_id"] == key_id), None)

    def pending_for_job(self, job_id: str) -> dict | None:
        p = self.prepared.get(job_id)
        return None if p is None else dict(p)

    def list_pending(self, state: str = "prepared") -> list[dict]:
        return [dict(p) for p in self.prepared.values() if p["state"] == state]

    def commit_prepared(self, job_id: str) -> dict | None:
        p = self.prepared.get(job_id)
        if p is None or p["state"] != "prepared":
            return None
        row = self.keys.rows.get(p["key_id"])
        if row is not None:
            if p["role"] == "leaver":
                row["status"] = "retired"
            else:
                row.update(status="active", epoch=max(row["epoch"], p["new_epoch"]))
        p["state"] = "committed"
        return dict(p)

    def abandon_prepared(self, job_id: str) -> list[str]:
        p = self.prepared.get(job_id)
        if p is None or p["state"] != "prepared":
            return []
        del self.prepared[job_id]
        return []

    def finalize_key(self, key_id: str, epoch: int) -> list[str]:
        for job_id in [j for j, p in self.prepared.items()
                       if p["key_id"] == key_id and p["state"] == "committed" and p["new_epoch"] <= epoch]:
            del self.prepared[job_id]
        for k in [k for k in self.keys.shares if k[0] == key_id and k[1] < epoch]:
            del self.keys.shares[k]
        return []

    def record_commit(self, job_id: str, key_id: str, kind: str, new_epoch: int, parties: list[int],
                      fingerprint: str | None = None) -> None:
        self.commits[job_id] = {"job_id": job_id, "key_id": key_id, "kind": kind, "new_epoch": new_epoch,
                                "parties": list(parties), "acked": [], "finalized": [], "fingerprint": fingerprint}

    def commit_record(self, job_id: str) -> dict | None:
        rec = self.commits.get(job_id)
        return None if rec is None else dict(rec)

    def open_commits(self) -> list[dict]:
        return [dict(r) for r in self.commits.values() if set(r["finalized"]) < set(r["parties"])]

    def commit_progress(self, job_id: str, *, acked: list[int] = (), finalized: list[int] = ()) -> dict | None:
        rec = self.commits.get(job_id)
        if rec is None:
            return None
        rec["acked"] = sorted(set(rec["acked"]) | set(acked))
        rec["finalized"] = sorted(set(rec["finalized"]) | set(finalized))
        return dict(rec)


class FakeOperations:
    """OperationStore: operation rows in a dict."""

    def __init__(self) -> None:
        self.ops: dict[str, dict] = {}

    def put_operation(self, op_id: str, kind: str, key_id: str | None, actor: str | None,
                      status: str = "running") -> None:
        now = time.time()
        self.ops[op_id] = {"op_id": op_id, "kind": kind, "key_id": key_id, "actor": actor, "status": status,
                           "result": None, "error": None, "created": now, "updated": now}

    def finish_operation(self, op_id: str, status: str, result: dict | None = None,
                         error: dict | None = None) -> None:
        self.ops[op_id].update(status=status, result=result, error=error)

    def set_operation_running(self, op_id: str, key_id: str | None) -> None:
        self.ops[op_id].update(status="running", key_id=key_id)

    def pending_operation_ids(self) -> list[str]:
        return [i for i, o in self.ops.items() if o["status"] == "pending"]

    def get_operation(self, op_id: str) -> dict | None:
        op = self.ops.get(op_id)
        return None if op is None else dict(op)


class FakePresignatures:
    """PresignatureStore: ``sets`` counts available presignatures per signer set (any key);
    ``by_id`` holds the ones added (id -> record), taken at most once."""

    def __init__(self) -> None:
        self.sets: dict[tuple[int, ...], int] = {}
        self.by_id: dict[bytes, dict] = {}
        self.destroyed: list[str] = []

    def add_presignature(self, presig_id: bytes, key_id: str, epoch: int, signers: list[int],
                         R: bytes, blob: bytes) -> None:
        self.by_id[presig_id] = {"presig_id": presig_id, "key_id": key_id, "epoch": epoch,
                                 "signer_set": list(signers), "R": R, "sealed": blob,
                                 "hsm_key_label": presig_id.hex()}
        self.sets[tuple(signers)] = self.sets.get(tuple(signers), 0) + 1

    def count_presignatures(self, key_id: str, signers: list[int] | None = None,
                            epoch: int | None = None) -> int:
        if signers is not None:
            return self.sets.get(tuple(signers), 0)
        return sum(self.sets.values())

    def ready_signer_sets(self, key_id: str) -> dict[tuple[int, ...], int]:
        return dict(self.sets)

    def _take(self, presig_id: bytes) -> Any:
        rec = self.by_id.pop(presig_id)
        self.sets[tuple(rec["signer_set"])] -= 1
        return types.SimpleNamespace(**rec)

    def take_any_presignature(self, key_id: str, signers: list[int], epoch: int) -> Any:
        for pid, rec in self.by_id.items():
            if (rec["key_id"], rec["signer_set"], rec["epoch"]) == (key_id, sorted(signers), epoch):
                return self._take(pid)
        raise PresignatureUnavailable("none available (fake)")

    def take_presignature(self, presig_id: bytes, *, reserved: bool, key_id: str | None = None,
                          signer_set: list[int] | None = None, epoch: int | None = None) -> Any:
        rec = self.by_id.get(presig_id)
        if rec is None or (key_id is not None and rec["key_id"] != key_id) or (
                signer_set is not None and rec["signer_set"] != sorted(signer_set)) or (
                epoch is not None and rec["epoch"] != epoch):
            return None
        return self._take(presig_id)

    def presignature_keys_destroyed(self, labels: list[str]) -> None:
        self.destroyed += labels


class FakePrimes:
    """PrimeStore: sealed primes per size in lists."""

    def __init__(self) -> None:
        self.pool: dict[int, list[bytes]] = {}

    def add_prime(self, bits: int, blob: bytes) -> None:
        self.pool.setdefault(bits, []).append(blob)

    def take_prime(self, bits: int) -> tuple[int, bytes] | None:
        got = self.pool.get(bits)
        return (bits, got.pop(0)) if got else None

    def count_primes(self, bits: int) -> int:
        return len(self.pool.get(bits, []))


class FakeAux:
    """AuxStore: pooled aux-info rows in a dict, bindings in another."""

    def __init__(self) -> None:
        self.rows: dict[str, dict] = {}
        self.bindings: dict[str, str] = {}

    def add_aux(self, aux_id: str, parties: list[int], bits: int, fingerprint: bytes, blob: bytes) -> None:
        self.rows[aux_id] = {"aux_id": aux_id, "parties": sorted(parties), "bits": bits, "fingerprint": fingerprint,
                             "sealed": blob, "keys_bound": 0}

    def get_aux(self, aux_id: str) -> dict | None:
        return self.rows.get(aux_id)

    def usable_aux(self, parties: list[int], bits: int, cap: int) -> list[str]:
        rows = [r for r in self.rows.values() if r["parties"] == sorted(parties) and r["bits"] == bits
                and r["keys_bound"] < cap]
        return [r["aux_id"] for r in sorted(rows, key=lambda r: -r["keys_bound"])]

    def aux_room(self, parties: list[int], bits: int, cap: int) -> int:
        return sum(cap - self.rows[a]["keys_bound"] for a in self.usable_aux(parties, bits, cap))

    def aux_of_key(self, key_id: str) -> str | None:
        return self.bindings.get(key_id)

    def delete_aux(self, aux_id: str) -> None:
        if aux_id in self.rows and self.rows[aux_id]["keys_bound"] == 0:
            del self.rows[aux_id]


class FakePolicyUpdates:
    """PolicyUpdateStore: the applied updates in a list."""

    def __init__(self) -> None:
        self.chain: list[dict] = []

    def add_policy_update(self, policy_hash: str, body: dict) -> None:
        self.chain.append(body)

    def policy_updates(self) -> list[dict]:
        return list(self.chain)


class FakeCertUpdates:
    """CertUpdateStore: the applied certificate updates in a dict by version."""

    def __init__(self) -> None:
        self.by_version: dict[int, dict] = {}

    def add_cert_update(self, version: int, node_id: str, fingerprint: str, body: dict) -> None:
        if version in self.by_version:
            raise ValueError(f"certificate update {version} exists")
        self.by_version[version] = body

    def cert_updates(self) -> list[dict]:
        return [self.by_version[v] for v in sorted(self.by_version)]


class FakeReplay:
    """ReplayStore: used job ids, used, reserved and claimed requests, in sets and dicts."""

    def __init__(self) -> None:
        self.jobs: set[str] = set()
        self.used: dict[str, dict | None] = {}
        self.marks: dict[str, tuple[str, list[int], float]] = {}
        self.claims: dict[str, dict] = {}

    def use_job_id(self, job_id: str) -> bool:
        if job_id in self.jobs:
            return False
        self.jobs.add(job_id)
        return True

    def job_id_used(self, job_id: str, *, older_than: float = 0.0) -> bool:
        return job_id in self.jobs

    def use_request(self, request_id: str, action: str, key_id: str | None, job_id: str,
                    amounts: dict[str, int] | None = None) -> bool:
        if request_id in self.used:
            return False
        self.used[request_id] = amounts
        return True

    def request_used(self, request_id: str) -> bool:
        return request_id in self.used

    def mark_request(self, request_id: str, key_id: str, signers: list[int]) -> bool:
        got = self.marks.setdefault(request_id, (key_id, sorted(signers), time.time()))
        return got[:2] == (key_id, sorted(signers))

    def signatures_since(self, key_id: str, since: float, *, besides: str | None = None) -> int:
        return sum(1 for rid, (k, _, t) in self.marks.items() if k == key_id and t >= since and rid != besides)

    def amounts_since(self, key_id: str, since: float) -> dict[str, int]:
        return {}

    def claim_request(self, request_id: str, initiator: str, nonce: str, content: str, owner: int) -> dict:
        return dict(self.claims.setdefault(request_id, {"content": content, "owner": owner}))

    def request_owner(self, request_id: str) -> int | None:
        got = self.claims.get(request_id)
        return None if got is None else got["owner"]

    def note_assertion(self, credential_id: str, counter: int, assertion_id: str, *,
                       in_order: bool = True) -> bool:
        seen = self.__dict__.setdefault("assertions", {}).setdefault(credential_id, {})
        if assertion_id in seen:
            return True
        top = max(seen.values(), default=0)
        if (top > 0 if counter == 0 else (counter <= top if in_order else counter in seen.values())):
            return False
        seen[assertion_id] = counter
        return True


class FakePorts:
    """Every port over a fake, and the slots services take (``slots("requests", ...)``).
    ``store``: a real NodeStore (on tmp_path) behind every store port instead of the fakes."""

    STORES = ("requests", "statements", "key_store", "changes", "operations", "presigs", "primes",
              "updates", "replay", "transactions")

    def __init__(self, store: Any = None) -> None:
        keys = FakeKeys()
        fakes = {"requests": FakeStore(), "key_store": keys, "changes": FakeKeyChanges(keys),
                 "operations": FakeOperations(), "presigs": FakePresignatures(), "primes": FakePrimes(),
                 "updates": FakePolicyUpdates(), "replay": FakeReplay()}
        fakes["statements"] = fakes["transactions"] = fakes["requests"]
        self.raw: dict[str, Any] = {n: store if store is not None else fakes[n] for n in self.STORES}
        self.audit = FakeAudit()
        self.signer = SoftwareSigner(hashlib.sha256(b"fake identity").digest())
        self.hsm = FakeSealer(self.signer)
        self.peers = FakePeers()
        self.raw.update(audit=self.audit, hsm=self.hsm, signer=self.signer)
        self._slots: dict[str, Opened] = {}

    def __getattr__(self, name: str) -> Any:
        raw = self.__dict__.get("raw", {})
        if name in raw:
            return raw[name]
        raise AttributeError(name)

    def slot(self, name: str) -> Opened:
        """The one slot of a port (the same object for every service, as in a node)."""
        if name not in self._slots:
            self._slots[name] = Opened(name, self.raw[name])
        return self._slots[name]

    def slots(self, *names: str) -> dict[str, Opened]:
        return {n: self.slot(n) for n in names}


class Users:
    """One key per role, and the default policy over them; ``approvers`` > 1: that many
    approvers (``approver``, ``approver2``, ...) and a rule needing all of them."""

    def __init__(self, approvers: int = 1) -> None:
        self.keys = {}
        public = {}
        roles = {"admin": ["admin"], "initiator": ["initiator"]}
        for i in range(approvers):
            roles["approver" if i == 0 else f"approver{i + 1}"] = ["approver"]
        for uid in roles:
            priv, pub = generate_user_key()
            self.keys[uid], public[uid] = priv, pub.decode()
        self.policy = default_policy("fake", public, roles=roles)
        if approvers > 1:
            rule = dataclasses.replace(self.policy.signing,
                                       approvals=(ApprovalGroup(("approver",), approvers),))
            self.policy = dataclasses.replace(self.policy, signing=rule)

    def decision(self, uid: str, sr, now: float, decision: str = "approve", ttl_s: int = 600):
        """``uid``'s signed decision on ``sr``, as a client body carries it."""
        a = make_approval(self.keys[uid], sr.request, approver=uid, now=now, ttl_s=ttl_s, decision=decision)
        return {"approval": a.to_json()}

    def request(self, now: float, **kw: Any):
        return make_request(self.keys["initiator"], cluster_id="fake", policy_hash=self.policy.hash,
                            initiator="initiator", now=now, ttl_s=600, **kw)


def fake_runtime(policy, *, clock: FakeClock | None = None):
    """What a service reads of :class:`appliance.runtime.Runtime` (identity, policy, clock,
    metrics, flags, spawn), with fakes behind it; the ports are :class:`FakePorts`."""
    peers = {i: types.SimpleNamespace(id=f"node-{i + 1}", index=i) for i in range(3)}
    spawned: list = []
    rt = types.SimpleNamespace(
        index=0, peers=peers, me=peers[0], policy=policy, clock=clock or FakeClock(),
        audit_ok=True, metrics=FakeMetrics(), events=FakeEvents(),
        faults=NO_FAULTS, waiters=Waiters(), ready=True, stopping=False, fault=None, spawned=spawned,
        node_ids=lambda idx: [peers[i].id for i in sorted(idx)],
        index_of=lambda node_id: next(p.index for p in peers.values() if p.id == node_id),
        spawn=lambda coro: spawned.append(asyncio.ensure_future(coro)))
    return rt


def with_identities(rt) -> dict:
    """Give ``rt`` real secp256k1 identity keys (coincurve): ``rt.cluster.nodes``, an
    :class:`IdentityDirectory` as ``rt.directory``; returns index -> its SoftwareSigner."""
    signers = {i: SoftwareSigner(bytes([i + 1]) * 32) for i in rt.peers}
    rt.cluster = types.SimpleNamespace(nodes=[
        types.SimpleNamespace(id=p.id, index=i, identity_key=signers[i].public_key()) for i, p in rt.peers.items()])
    rt.directory = IdentityDirectory({i: s.public_key() for i, s in signers.items()})
    return signers
