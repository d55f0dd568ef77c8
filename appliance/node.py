"""A signing node: runs protocol sessions with its peers; the one place where share, HSM,
store, policy, audit and metrics meet.

Jobs and sessions
-----------------
Every multi-party operation is a *job* with a random id, run by a set of party indices (fixed
by the cluster configuration: node id -> index). The node that receives the client request
*coordinates*: it checks the request, picks a quorum of healthy peers (or the one named),
sends the job description to the others (``POST /v1/peer/jobs``), runs its own part if it is
one of the parties, collects every party's report, and finishes (commits a key, releases a
signature) or cancels the job everywhere with the cause and the culprits where known.

A job has phases, each one protocol session with its own id ``H(job id, phase)[:16]``:

=================  ==========================================================
keygen             keygen (DKG) -> aux (Paillier, ring-Pedersen) -> pending key; commit
refresh            aux with refresh=True -> pending share of epoch+1; commit
reshare            reshare (senders -> new committee) -> aux on the new committee; commit
import             (share decrypted in the HSM, checked against the dealer's commitments) -> aux; commit
presign            presign -> sealed presignature (own HSM key each)
sign               [presign ->] sign (with a stored presignature: sign only)
=================  ==========================================================

Key changes (keygen, refresh, reshare, import) end in two phases: every party *prepares*
(sealed result stored, an fsynced record of what it will commit); the coordinator records its
decision, then asks each party to *commit* (the new epoch in use, the old share kept) and,
once all confirmed, to *finalize* (older shares and presignatures destroyed). A party that
missed the outcome asks the coordinator (``_lifecycle_loop``); a change that does not finish
leaves the old epoch in use.

Each party drives its state machine itself: messages it emits go straight to their
recipients (broadcasts to every other party of the session, direct messages encrypted to
the recipient's HSM transport key). Every round has a deadline (``round_timeout_s``); a
round that does not complete names the parties whose messages are missing. A
``ProtocolAbort`` names the culprits the state machine proved. CPU-heavy steps (``start``,
``receive``, aux key generation) run in a thread pool whose threads let gmpy2 release the
GIL, so the event loop keeps answering; fresh primes are made in worker processes.

Policy, audit and metrics (appliance/node_policy.py, :class:`PolicyMixin`): ``Node.policy``
(the cluster policy in force: every request, approval and job a peer asks this node to join
is checked against it here, and a sign job's payload decoded here), ``Node.audit`` (the
hash-chained audit log: no entry, no action) and ``Node.metrics``. Job ids are recorded
durably: a job id, hence a session id, is never run twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import multiprocessing
import os
import secrets
import sqlite3
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import gmpy2
from yarl import URL

from appliance import payloads
from appliance.bounded import check_recursion_limit
from appliance.config import NodeConfig, PeerInfo
from appliance.early_frames import EarlyFrames
from appliance.errors import ApplianceError, PolicyDenied, ServiceError
from appliance.faults import NO_FAULTS, FaultPlan
from appliance.hardening import disable_core_dumps
from appliance.ports import NO_EVENTS, SYSTEM_CLOCK, Clock, EventSink
from appliance.ids import check_id, peer_path
from appliance.job_authority import COORDINATOR_SIG, JOB_AUTHORITY, as_wire, coordinator_signature_ok, job_digest
from appliance.key_import import ImportBundleError, parse_bundle, request_params, share_context
from appliance.node_store import NodeStore
from appliance.payloads import eth_typed  # noqa: F401  eth-account now, the limit put back
from appliance.presig_keys import destroy_spent_presignature_keys
from appliance.quarantine import Quarantine
from appliance.request_use import USE_MARKS, RequestUse, RequestUseRefused
from appliance.sealed import SealContext, presig_key_label
from appliance.transport import (
    Frame,
    PeerClient,
    PeerError,
    decode_batch,
    encode_batch,
    frame_context,
    make_frame,
)
from appliance.tss import ecdsa, wire
from appliance.tss.aux import AuxParty, generate_aux_keys
from appliance.tss.dealer import ImportError_, accept_share
from appliance.tss.group import Q, SystemRNG
from appliance.tss.keygen import KeygenParty
from appliance.tss.keyshare import KeyShare
from appliance.tss.presign import Presignature, PresignParty
from appliance.tss.primes import PrimePool, random_blum_prime, random_safe_prime
from appliance.tss.protocol import IdentityDirectory, Message, MessageRejected, ProtocolAbort, RoundPayload
from appliance.tss.reshare import OldKeyInfo, ReshareConfirmed, ReshareParty
from appliance.tss.sign import SignParty, SignR2
from hsm import HSM
from hsm.errors import (HSMConfigError, HSMError, HSMIntegrityError, HSMModuleError, HSMPinError,
                        HSMTokenNotFoundError, HSMUnavailableError)

log = logging.getLogger("appliance.node")

KEY_CHANGES = ("keygen", "refresh", "reshare", "import")  # prepared, then committed, then finalized
SHARE_CACHE_S = 300.0
PRESIGN_QUIET_S = 0.5  # pool refills wait until signing has been quiet this long
MAX_SIGN_ITEMS = 100  # signatures in one sign job: PSBT inputs of ours (the decoder allows 100)
TERMINAL = ("done", "failed", "signed", "cancelled", "rejected", "expired")


# ---------------------------------------------------------------------------------------
# errors with an HTTP meaning


# ---------------------------------------------------------------------------------------
# policy, audit and metrics: appliance/node_policy.py (PolicyMixin), appliance/policy.py,
# appliance/audit.py, appliance/metrics.py


# ---------------------------------------------------------------------------------------
# HSM adapter and CPU pool


class HSMSigner:
    """The node's HSM identity key as a protocol message signer (secp256k1, low-S r||s)."""

    def __init__(self, hsm) -> None:
        self.hsm = hsm
        self._pub = hsm.identity_public_key

    def sign(self, digest: bytes) -> bytes:
        sig = self.hsm.sign_digest(digest)
        r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
        if s > Q // 2:
            s = Q - s
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def public_key(self) -> bytes:
        return self._pub


def _init_cpu_thread() -> None:
    gmpy2.get_context().allow_release_gil = True


def _init_prime_process() -> None:
    # background work: protocol rounds of this and the other nodes come first
    try:
        os.nice(10)
    except OSError:
        pass
    try:
        disable_core_dumps()
    except Exception:
        pass


class FixedPrimes:
    """Primes reserved for one aux-info run (taken from the pool beforehand, off the loop)."""

    def __init__(self, blum: list[int], safe: list[int]) -> None:
        self._blum, self._safe = list(blum), list(safe)

    def blum_prime(self, bits: int) -> int:
        if self._blum:
            return self._blum.pop()
        return random_blum_prime(bits)

    def safe_prime(self, bits: int) -> int:
        if self._safe:
            return self._safe.pop()
        return random_safe_prime(bits)


def phase_sid(job_id: str, phase: str) -> bytes:
    return hashlib.sha256(b"appliance/session/" + job_id.encode() + b"/" + phase.encode()).digest()[:16]


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


class JobFailed(Exception):
    def __init__(self, error: ServiceError) -> None:
        super().__init__(error.message)
        self.error = error


# ---------------------------------------------------------------------------------------
# one job as run on this node


@dataclass
class JobRun:
    node: "Node"
    spec: dict
    queues: dict[bytes, asyncio.Queue] = field(default_factory=dict)
    phases: dict[bytes, str] = field(default_factory=dict)
    received: dict[tuple[bytes, int], set[int]] = field(default_factory=dict)
    reports: dict[int, dict] = field(default_factory=dict)
    report_event: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None
    dropped: int = 0
    cancelled: dict | None = None
    result: Any = None
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        for ph in self.phase_names():
            sid = phase_sid(self.job_id, ph)
            self.phases[sid] = ph
            self.queues[sid] = asyncio.Queue()

    @property
    def job_id(self) -> str:
        return self.spec["job_id"]

    @property
    def kind(self) -> str:
        return self.spec["kind"]

    @property
    def parties(self) -> list[int]:
        return list(self.spec["parties"])

    def phase_names(self) -> list[str]:
        k = self.kind
        if k == "keygen":
            return ["keygen", "aux"]
        if k in ("refresh", "import"):
            return ["aux"]
        if k == "reshare":
            return ["reshare", "aux"]
        if k == "presign":
            return ["presign"]
        # sign: one presign + sign per item (a PSBT input each); item 0 may use a stored
        # presignature. Phase names of item 0 are the historic "presign"/"sign".
        items = self.spec.get("items") or [None]
        out: list[str] = []
        for i in range(min(len(items), MAX_SIGN_ITEMS)):
            sfx = "" if i == 0 else f"/{i}"
            if not (i == 0 and self.spec.get("presig_id")):
                out.append(f"presign{sfx}")
            out.append(f"sign{sfx}")
        return out


# ---------------------------------------------------------------------------------------


from appliance.metrics import Metrics  # noqa: E402
from appliance.node_policy import MeteredHSM, PolicyMixin, fault_digest  # noqa: E402


class Node(PolicyMixin):
    def __init__(self, config: NodeConfig, *, faults: FaultPlan = NO_FAULTS, clock: Clock = SYSTEM_CLOCK,
                 events: EventSink = NO_EVENTS) -> None:
        self.config = config
        self.cluster = config.cluster
        self.me: PeerInfo = config.me
        self.index = self.me.index
        self.peers: dict[int, PeerInfo] = {n.index: n for n in self.cluster.nodes}
        self.store: NodeStore | None = None
        self.hsm = None
        self.signer: HSMSigner | None = None
        self.directory = IdentityDirectory({n.index: n.identity_key for n in self.cluster.nodes})
        self.request_use = RequestUse(self)
        self.cpu = ThreadPoolExecutor(max(1, config.workers), thread_name_prefix="tss",
                                      initializer=_init_cpu_thread)
        # signing from a presignature is cheap: it never waits behind a presign or aux step
        self.fast = ThreadPoolExecutor(2, thread_name_prefix="sign", initializer=_init_cpu_thread)
        self._procs: ProcessPoolExecutor | None = None
        self.client = PeerClient(config)
        self.jobs: dict[str, JobRun] = {}
        self._finished_jobs: dict[str, float] = {}
        self._early = EarlyFrames()  # frames of jobs not opened yet, bounded in bytes per peer
        self._health: dict[int, tuple[float, bool]] = {}
        self._shares: dict[tuple[str, int], tuple[float, KeyShare]] = {}
        self._last_sign = 0.0
        self._waiters: dict[str, asyncio.Event] = {}
        self._bg: set[asyncio.Task] = set()
        self._presign_running: set[tuple] = set()
        self._presign_wakeup = asyncio.Event()
        self.metrics = Metrics(peers=[n.id for n in self.cluster.nodes])
        self.policy = self.base_policy()  # plus the stored updates, at start
        self.audit = None  # AuditLog, opened at start
        self.audit_ok = True
        self.test_primes: PrimePool | None = None
        self.ready = False
        self.stopping = False
        self.faults = faults  # test-only fault injection (appliance/faults.py); production: none
        self.clock = clock  # policy time (validity windows, expiry)
        self.events = events  # what tests wait on instead of sleeping (appliance/ports.py)
        self.lifecycle_interval = config.lifecycle_interval_s
        self._sent_log: list[tuple[int, str, dict]] = []
        self.fault: str | None = None  # why the node is not ready (HSM away, database corrupt)
        self.quarantine = Quarantine(config.db.with_name(config.db.name + ".quarantine.json"),
                                     [n.id for n in self.cluster.nodes], self.metrics.registry)

    # -- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        check_recursion_limit()  # a raised limit lets a deep body overflow the C stack
        problem = database_problem(self.config.db)
        if problem is not None:
            # fail closed but stay up: /healthz answers, /readyz says why, nothing is signed
            self.fault = problem
            log.error("%s", problem)
            return
        self.store = NodeStore(self.config.db)
        self.store.recover_after_restart({"code": "node_restarted",
                                          "message": "the node stopped while this was running"})
        self._open_policy()
        self._open_audit()
        hcfg = self.config.hsm_config()
        if hcfg.identity_curve != "secp256k1":
            raise ServiceError("bad_config", "the identity key must be secp256k1")
        try:
            hsm = await HSM.open_async(hcfg, node_id=self.me.id)
        except (HSMPinError, HSMTokenNotFoundError, HSMUnavailableError, HSMModuleError, HSMConfigError) as exc:
            # wrong PIN, token directory gone...: not ready (503) and retried, never a crash
            self.fault = f"HSM unavailable: {exc}"
            log.error("%s; retrying", self.fault)
            self._spawn(self._open_hsm_later(hcfg))
            return
        await self._started_with(hsm)

    async def _open_hsm_later(self, hcfg) -> None:
        delay = 1.0
        while not self.stopping:
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 5.0)
            try:
                hsm = await HSM.open_async(hcfg, node_id=self.me.id)  # re-reads the PIN file
            except HSMError as exc:
                self.fault = f"HSM unavailable: {exc}"
                continue
            await self._started_with(hsm)
            log.info("HSM available again; node ready")
            return

    async def _started_with(self, hsm) -> None:
        self.hsm = MeteredHSM(hsm, self.metrics)
        self.fault = None
        if self.hsm.identity_public_key != self.me.identity_key:
            raise ServiceError("bad_config", "the HSM identity key differs from the cluster configuration")
        if self.hsm.transport_public_key != self.me.transport_key:
            raise ServiceError("bad_config", "the HSM transport key differs from the cluster configuration")
        self.signer = HSMSigner(self.hsm)
        # presignatures reserved by a process that died are burnt; spent ones lose their key
        await asyncio.get_running_loop().run_in_executor(
            None, destroy_spent_presignature_keys, self.store.core, self.hsm)
        if self.config.prime_file is not None:
            # test-only primes: read only because the configuration names the file
            self.test_primes = PrimePool.from_file(self.config.prime_file)
        else:
            self._spawn(self._fill_prime_pool())
        self._spawn(self._presign_loop())
        self._spawn(self._housekeeping())
        self._spawn(self._lifecycle_loop())
        self._report_presignatures()
        self._spawn(self._cosign_loop())
        self._spawn(self._sync_policy())
        self._audit_quiet(self.me.id, "node_start", decision="started",
                          reason=f"policy version {self.policy.version}")
        self.ready = True

    async def stop(self) -> None:
        self.stopping = True
        self.ready = False
        for job in list(self.jobs.values()):
            if job.task is not None:
                job.task.cancel()
        for t in list(self._bg):
            t.cancel()
        await asyncio.gather(*self._bg, return_exceptions=True)
        if self.audit is not None:
            self._audit_quiet(self.me.id, "node_stop", decision="stopped")
            try:  # the final checkpoint, co-signed by the peers that still answer
                if self.signer is not None and self.audit.checkpoint() is not None:
                    await asyncio.wait_for(self._cosign_pending(timeout=2.0), 3.0)
            except Exception as exc:  # noqa: BLE001
                log.info("final audit checkpoint: %s", exc)
        await self.client.close()
        if self.audit is not None:
            self.audit.close()  # (checkpoints the head if anything came after)
        if self.hsm is not None:
            await self.hsm.close_async()
        if self.store is not None:
            self.store.close()
        self.cpu.shutdown(wait=False, cancel_futures=True)
        self.fast.shutdown(wait=False, cancel_futures=True)
        if self._procs is not None:
            # a prime search can take seconds: stop it rather than wait for it
            for proc in list(getattr(self._procs, "_processes", {}).values()):
                try:
                    proc.terminate()
                except Exception:
                    pass
            self._procs.shutdown(wait=False, cancel_futures=True)

    def _spawn(self, coro) -> asyncio.Task:
        t = asyncio.ensure_future(coro)
        self._bg.add(t)
        t.add_done_callback(self._bg.discard)
        return t

    async def cpu_call(self, fn: Callable, *args: Any, fast: bool = False) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.fast if fast else self.cpu, fn, *args)

    @property
    def procs(self) -> ProcessPoolExecutor:
        if self._procs is None:
            self._procs = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                              initializer=_init_prime_process)
        return self._procs

    def node_ids(self, indices) -> list[str]:
        return [self.peers[i].id for i in sorted(indices) if i in self.peers]

    def index_of(self, node_id: str) -> int:
        for n in self.cluster.nodes:
            if n.id == node_id:
                return n.index
        raise ServiceError("unknown_node", f"unknown node {node_id!r}")

    # -- primes -----------------------------------------------------------------------

    async def _take_primes(self, bits: int) -> FixedPrimes:
        """Two Blum and two safe primes of bits/2 bits: from the test-only pool (when the
        configuration names one), else safe primes from the sealed pool; Blum primes (cheap)
        and missing safe primes are made fresh in a worker process."""
        half = bits // 2
        out: dict[str, list[int]] = {"blum": [], "safe": []}
        for kind in ("blum", "safe"):
            for _ in range(2):
                p = None
                if self.test_primes is not None:
                    try:
                        p = (self.test_primes.blum_prime(half) if kind == "blum"
                             else self.test_primes.safe_prime(half))
                    except ApplianceError:
                        p = None
                if p is None and kind == "safe":
                    item = self.store.take_prime(half)
                    if item is not None:
                        p = int.from_bytes(await self.hsm.unseal_async(self._prime_ctx(half), item[1]), "big")
                if p is None and kind == "blum":
                    continue  # cheap: FixedPrimes makes it in the aux worker thread
                if p is None:
                    p = await asyncio.get_running_loop().run_in_executor(self.procs, random_safe_prime, half)
                out[kind].append(p)
        if self.test_primes is None:
            self._spawn(self._fill_prime_pool())
        return FixedPrimes(out["blum"], out["safe"])

    _filling = False

    @staticmethod
    def _prime_ctx(half: int):
        return SealContext("prime", key_id=f"safe-{half}")

    async def _fill_prime_pool(self) -> None:
        """Keep ``pool_target`` sealed safe primes ready (made in a niced worker process)."""
        if self._filling or self.test_primes is not None:
            return
        self._filling = True
        try:
            half = self.config.paillier_bits // 2
            loop = asyncio.get_running_loop()
            while not self.stopping and self.store.count_primes(half) < self.config.prime_pool_target:
                p = await loop.run_in_executor(self.procs, random_safe_prime, half)
                blob = await self.hsm.seal_async(self._prime_ctx(half), int(p).to_bytes((half + 7) // 8, "big"))
                self.store.add_prime(half, blob)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # pragma: no cover - logged, retried on next use
            log.warning("prime pool filling stopped: %s", exc)
        finally:
            self._filling = False

    def prime_counts(self) -> dict:
        half = self.config.paillier_bits // 2
        if self.test_primes is not None:
            c = self.test_primes.counts()
            return {"source": "test-only file", "safe": c["safe"].get(half, 0), "blum": c["blum"].get(half, 0)}
        n = self.store.count_primes(half)
        return {"source": "sealed pool", "safe": n, "blum": n}

    # -- health -----------------------------------------------------------------------

    async def peer_healthy(self, index: int, *, max_age: float = 2.0) -> bool:
        if index == self.index:
            return True
        now = time.monotonic()
        cached = self._health.get(index)
        if cached and cached[1] and now - cached[0] < max_age:
            return True
        try:
            body = await self.client.request(self.peers[index], "GET", peer_path("health"), timeout=2.0)
            ok = bool(body.get("ready"))
        except PeerError:
            ok = False
        self._health[index] = (time.monotonic(), ok)
        return ok

    async def split_healthy(self, indices, *, max_age: float = 0.0) -> tuple[list[int], list[int]]:
        """(reachable, unreachable) among ``indices``; asks each peer now unless it answered
        within ``max_age`` seconds (client requests ask now: a refused request changes nothing,
        so a stopped node must be found before anything is created)."""
        indices = sorted(indices)
        oks = await asyncio.gather(*(self.peer_healthy(i, max_age=max_age) for i in indices))
        return ([i for i, ok in zip(indices, oks) if ok], [i for i, ok in zip(indices, oks) if not ok])

    def mark_unhealthy(self, index: int) -> None:
        self._health[index] = (time.monotonic(), False)

    async def hsm_healthy(self) -> bool:
        if self.hsm is None:
            return False
        try:
            return bool(await asyncio.get_running_loop().run_in_executor(None, self.hsm.health))
        except Exception:
            return False

    async def require_hsm(self) -> None:
        """Fail closed: without a working HSM this node neither signs nor coordinates."""
        if not self.ready or not await self.hsm_healthy():
            raise ServiceError("hsm_unavailable",
                            f"{self.me.id}: the HSM is not available ({self.fault or 'token not answering'}); "
                            "nothing is signed")

    # -- quarantine ---------------------------------------------------------------------

    def not_quarantined(self, indices) -> list[int]:
        return [i for i in indices if self.peers[i].id not in self.quarantine]

    def _quarantine_culprits(self, err: ServiceError, spec: dict) -> None:
        """A node named by an identifiable abort is left out of quorums until an admin clears it."""
        if err.code != "protocol_abort" or not err.culprits:
            return
        for node_id in err.culprits:
            if node_id == self.me.id or node_id not in {n.id for n in self.cluster.nodes}:
                continue
            if self.quarantine.add(node_id, err.message, spec.get("job_id")):
                log.warning("node %s quarantined: %s", node_id, err.message)
                try:
                    self.audit.record(self.me.id, "node_quarantined", key_id=spec.get("key_id"),
                                      subject=node_id, decision="quarantined",
                                      reason=f"job {spec.get('job_id')}: {err.message}"[:300])
                except Exception:  # the quarantine holds even if the audit write fails
                    log.exception("audit of quarantine failed")

    def quarantine_view(self) -> dict:
        return {"nodes": self.quarantine.view()}

    def clear_quarantine(self, user, node_id: str) -> dict:
        self.require_admin(user, "clear_quarantine")
        entry = self.quarantine.clear(node_id)
        if entry is None:
            raise ServiceError("not_found", "unknown quarantined node")
        self.audit.record(user.id, "quarantine_cleared", subject=node_id, decision="cleared",
                          reason=str(entry.get("reason", ""))[:300])
        return {"node_id": node_id, "cleared": True, **entry}

    # -- keys and shares ----------------------------------------------------------------

    def key_view(self, row: dict) -> dict:
        return {
            "key_id": row["key_id"],
            "public_key": row["public_key"].hex() if row["public_key"] else None,
            "threshold": row["threshold"],
            "nodes": self.node_ids(row["participants"]),
            "epoch": row["epoch"],
            "paillier_bits": row["paillier_bits"],
            "status": row["status"],
            "created": row["created"],
        }

    def active_key(self, key_id: str) -> dict:
        row = self.store.get_key(key_id)
        if row is None or row["status"] != "active":
            raise ServiceError("not_found", "unknown key")
        return row

    async def load_share(self, row: dict) -> KeyShare:
        """The key's share at its current epoch, unsealed by the HSM (kept decoded in this
        process's memory for ``SHARE_CACHE_S`` seconds, never written anywhere)."""
        ck = (row["key_id"], row["epoch"])
        hit = self._shares.get(ck)
        if hit is not None and time.monotonic() - hit[0] < SHARE_CACHE_S:
            return hit[1]

        ctx = SealContext("share", key_id=row["key_id"], epoch=row["epoch"])
        data = await self.hsm.unseal_async(ctx, self.store.share_blob(row["key_id"], row["epoch"]))
        share = await self.cpu_call(KeyShare.from_bytes, data)
        del data
        self._shares = {k: v for k, v in self._shares.items() if k[0] != row["key_id"]}
        self._shares[ck] = (time.monotonic(), share)
        return share

    async def seal_share(self, key_id: str, share: KeyShare) -> bytes:
        return await self.hsm.seal_async(SealContext("share", key_id=key_id, epoch=share.epoch),
                                         share.to_bytes())

    # ===================================================================================
    # client-facing operations (api/routes/ call these after authentication)

    async def create_key(self, user, threshold: Any, node_ids: Any = None,
                         paillier_bits: Any = None, request: Any = None) -> dict:
        """A DKG, once the signed request (action keygen, params {threshold, nodes?}) meets the
        policy's key-change quorum (else a pending operation waiting for admin approvals)."""
        self._key_params(threshold, node_ids)
        bits = self.config.paillier_bits if paillier_bits is None else paillier_bits
        if bits not in (2048, 3072):
            raise ServiceError("bad_paillier_bits", "paillier_bits must be 2048 or 3072")
        params = {"threshold": threshold, **({"nodes": node_ids} if node_ids is not None else {})}
        body = {"threshold": threshold, "nodes": node_ids, "paillier_bits": bits}
        view, sr = await self._key_operation(user, "keygen", None, params, request, body)
        if view is not None:
            return view
        return await self._launch_key_op("keygen", user.id, sr, [], body)

    async def refresh_key(self, user, key_id: str, request: Any = None) -> dict:
        self.active_key(key_id)
        view, sr = await self._key_operation(user, "refresh", key_id, {}, request, {})
        if view is not None:
            return view
        return await self._launch_key_op("refresh", user.id, sr, [], {})

    async def reshare_key(self, user, key_id: str, threshold: Any, node_ids: Any,
                          request: Any = None) -> dict:
        """Move the key to ``node_ids`` with ``threshold`` (same public key): the reachable
        current holders send, the new committee receives, runs aux-info and confirms; old
        shares are deleted only once every new member has confirmed (commit)."""
        row = self.active_key(key_id)
        if not isinstance(threshold, int) or isinstance(threshold, bool):
            raise ServiceError("bad_threshold", "threshold must be an integer")
        if not isinstance(node_ids, list) or not all(isinstance(x, str) for x in node_ids):
            raise ServiceError("bad_nodes", "nodes must be a list of node ids")
        new = sorted({self.index_of(x) for x in node_ids})
        if len(new) != len(node_ids) or len(new) < 2:
            raise ServiceError("bad_nodes", "nodes must be at least two distinct node ids")
        if not 1 <= threshold <= len(new):
            raise ServiceError("bad_threshold", f"threshold must be between 1 and {len(new)}")
        if self.index not in row["participants"]:
            raise ServiceError("not_a_holder", "send the reshare request to a node that holds the key")
        params = {"threshold": threshold, "nodes": node_ids}
        view, sr = await self._key_operation(user, "reshare", key_id, params, request, params)
        if view is not None:
            return view
        return await self._launch_key_op("reshare", user.id, sr, [], params)

    def _key_params(self, threshold: Any, node_ids: Any) -> list[int]:
        if not isinstance(threshold, int) or isinstance(threshold, bool):
            raise ServiceError("bad_threshold", "threshold must be an integer")
        if node_ids is None:
            parties = [n.index for n in self.cluster.nodes]
        else:
            if not isinstance(node_ids, list) or not all(isinstance(x, str) for x in node_ids):
                raise ServiceError("bad_nodes", "nodes must be a list of node ids")
            parties = sorted({self.index_of(x) for x in node_ids})
            if len(parties) != len(node_ids):
                raise ServiceError("bad_nodes", "nodes must not repeat")
        if len(parties) < 2:
            raise ServiceError("bad_nodes", "a key needs at least two nodes")
        if not 1 <= threshold <= len(parties):
            raise ServiceError("bad_threshold", f"threshold must be between 1 and {len(parties)}")
        return parties

    async def _launch_key_op(self, kind: str, actor: str, sr, approvals: list, body: dict, *,
                             op_id: str | None = None) -> dict:
        """Run an allowed key change (its job carries the signed request and approvals, which
        every party checks); ``op_id``: the pending operation it was waiting as."""
        job_id = new_id("job")
        if kind == "import":
            bundle = self._import_bundle(body["bundle"])
            await self.require_hsm()
            _, missing = await self.split_healthy(bundle.parties)
            if missing:
                raise ServiceError("quorum_unreachable", "every node of an imported key must be reachable",
                                missing_nodes=self.node_ids(missing))
            key_id = new_id("key")
            spec = {"job_id": job_id, "kind": "import", "key_id": key_id, "parties": bundle.parties,
                    "threshold": bundle.threshold, "paillier_bits": body["paillier_bits"],
                    "bundle": bundle.to_json()}
            if self.index in bundle.parties:  # this node's own share first: refused before anything
                await self._check_import_share(spec)
        elif kind == "keygen":
            parties = self._key_params(body["threshold"], body.get("nodes"))
            _, missing = await self.split_healthy(parties)
            if missing:
                raise ServiceError("quorum_unreachable", "every node of a new key must be reachable",
                                missing_nodes=self.node_ids(missing))
            key_id = new_id("key")
            spec = {"job_id": job_id, "kind": "keygen", "key_id": key_id, "parties": parties,
                    "threshold": body["threshold"], "paillier_bits": body["paillier_bits"]}
        elif kind == "refresh":
            key_id = sr.request.key_id
            row = self.active_key(key_id)
            if self._key_change_running(key_id):
                raise ServiceError("key_change_in_progress", "another change of this key is under way")
            parties = row["participants"]
            _, missing = await self.split_healthy(parties)
            if missing:
                raise ServiceError("quorum_unreachable", "every node of the key must be reachable to refresh",
                                missing_nodes=self.node_ids(missing))
            spec = {"job_id": job_id, "kind": "refresh", "key_id": key_id, "parties": parties,
                    "threshold": row["threshold"], "paillier_bits": row["paillier_bits"],
                    "epoch": row["epoch"]}
        else:
            key_id = sr.request.key_id
            row = self.active_key(key_id)
            threshold, new = body["threshold"], sorted(self.index_of(x) for x in body["nodes"])
            if self._key_change_running(key_id):
                raise ServiceError("key_change_in_progress", "another change of this key is under way")
            old_holders = row["participants"]
            healthy, missing = await self.split_healthy(sorted(set(old_holders) | set(new)))
            missing_new = [p for p in missing if p in new]
            senders = await self._reshare_senders(row, [p for p in old_holders if p in healthy])
            if missing_new or len(senders) < row["threshold"]:
                raise ServiceError("quorum_unreachable", "the new committee and a quorum of holders must be reachable",
                                missing_nodes=self.node_ids(missing))
            share = await self.load_share(row)
            old_info = wire.encode(OldKeyInfo.of(share)).hex()
            spec = {"job_id": job_id, "kind": "reshare", "key_id": key_id,
                    "parties": sorted(set(senders) | set(new)), "senders": senders, "new_members": new,
                    "threshold": threshold, "old_threshold": row["threshold"], "old_info": old_info,
                    "paillier_bits": row["paillier_bits"], "epoch": row["epoch"]}
        if op_id is None:
            op_id = new_id("op")
            self._audit(actor, f"{kind}_request", key_id=key_id, subject=op_id, decision="allowed",
                        reason=f"request {sr.request_id}")
            self.store.put_operation(op_id, kind, key_id, actor)
            self.store.put_statement(sr.request_id, op_id, kind, key_id, sr.to_json(), payload=body)
        else:
            self._audit(actor, f"{kind}_approved", key_id=key_id, subject=op_id, decision="allowed",
                        reason=f"request {sr.request_id}")
            self.store.set_operation_running(op_id, key_id)
        spec.update({"coordinator": self.index, "operation_id": op_id, "actor": actor,
                     "request_id": sr.request_id, "request": sr.to_json(),
                     "approvals": [a.to_json() for a in approvals], "policy_hash": self.policy.hash})
        self._spawn(self._run_operation(op_id, spec))
        return self.operation_view(self.store.get_operation(op_id))

    def operation_view(self, op: dict) -> dict:
        out = {"operation_id": op["op_id"], "kind": op["kind"], "key_id": op["key_id"],
               "status": op["status"], "created": op["created"], "updated": op["updated"]}
        if op["result"] is not None:
            out["result"] = op["result"]
        if op["error"] is not None:
            out["error"] = op["error"]
        st = self.store.get_statement(op["op_id"])
        if st is not None:  # the signed request (what an approving admin signs over) and decisions
            out["request"] = st["request"]
            out["decisions"] = [{"approver": a["statement"]["approver"],
                                 "decision": a["statement"]["decision"]}
                                for a in self.store.decisions(st["request_id"])]
        return out

    async def get_operation(self, op_id: str, wait: float = 0.0) -> dict:
        op = self.store.get_operation(op_id)
        if op is None:
            raise ServiceError("not_found", "unknown operation")
        if wait > 0 and op["status"] not in TERMINAL:
            await self._wait_for(op_id, wait)
            op = self.store.get_operation(op_id)
        return self.operation_view(op)

    async def _wait_for(self, ident: str, wait: float) -> None:
        ev = self._waiters.setdefault(ident, asyncio.Event())
        try:
            await asyncio.wait_for(ev.wait(), min(wait, 60.0))
        except asyncio.TimeoutError:
            pass

    def _notify(self, ident: str) -> None:
        ev = self._waiters.pop(ident, None)
        if ev is not None:
            ev.set()

    async def _run_operation(self, op_id: str, spec: dict) -> None:
        try:
            result = await self.coordinate(spec)
            self.store.finish_operation(op_id, "done", result=result)
            self._audit_quiet(spec.get("actor"), f"{spec['kind']}_done", key_id=spec.get("key_id"),
                              subject=op_id, decision="done")
        except JobFailed as exc:
            self.store.finish_operation(op_id, "failed", error=exc.error.to_error())
            self._audit_quiet(spec.get("actor"), f"{spec['kind']}_failed", key_id=spec.get("key_id"),
                              subject=op_id, decision="failed", reason=exc.error.code)
        except Exception as exc:  # pragma: no cover - defensive
            log.exception("operation %s crashed", op_id)
            self.store.finish_operation(op_id, "failed", error={"code": "internal",
                                                                "message": type(exc).__name__})
        finally:
            self._notify(op_id)

    # -- signing ------------------------------------------------------------------------

    # create_sign_request, decide_sign_request, sign_request_view: appliance/node_policy.py

    def _choose_signers(self, row: dict, healthy: list[int], t: int) -> list[int]:
        """Prefer a set that includes this node and has presignatures ready; else this node
        and the first healthy others."""
        if self.index in healthy:
            ready = self.store.ready_signer_sets(row["key_id"])
            best = None
            for s, n in ready.items():
                if n > 0 and self.index in s and set(s) <= set(healthy):
                    if best is None or n > ready[best]:
                        best = s
            if best is not None:
                return list(best)
            others = [i for i in healthy if i != self.index]
            return sorted([self.index] + others[: t - 1])
        return sorted(healthy[:t])

    async def _run_sign(self, request_id: str, row: dict, dec, signers: list[int], actor: str,
                        sr, approvals: list, payload: Any = None) -> None:
        """Coordinate the signing of an allowed request: one signature per item this node
        decoded (a PSBT input each; one for a digest, a transaction or typed data). The job
        carries the signed request and its approvals, which every signer checks itself."""
        taken = None
        self._last_sign = time.monotonic()
        try:
            r = sr.request
            items = [{"digest": it.digest.hex(), "tweak": format(it.tweak, "x")} for it in dec.items]
            spec = {"job_id": new_id("job"), "kind": "sign", "key_id": row["key_id"], "parties": signers,
                    "epoch": row["epoch"], "digest": items[0]["digest"], "items": items,
                    "coordinator": self.index, "request_id": request_id, "actor": actor,
                    "policy_hash": self.policy.hash, "request": sr.to_json(),
                    "approvals": [a.to_json() for a in approvals],
                    "derivation_path": r.derivation_path}
            if r.payload_type is not None:
                spec.update(payload=payload, payload_type=r.payload_type)
            try:  # one signer set per request, cluster-wide (appliance/request_use.py)
                spec[USE_MARKS] = await self.request_use.reserve_everywhere(sr, row, signers)
            except RequestUseRefused as exc:
                raise JobFailed(exc) from None
            self._coordinator_fault(spec, r)
            if self.index in signers:
                # spent durably here, before anything of it is used
                taken = self.store.take_any_presignature(row["key_id"], signers, row["epoch"])
            if taken is not None:
                spec["presig_id"] = taken.presig_id.hex()
                self._presign_wakeup.set()
                self._report_presignatures()
            try:
                result = await self.coordinate(spec, taken=taken, items=dec)
            except JobFailed as exc:
                if taken is None or exc.error.code not in ("presignature_unavailable",):
                    raise
                spec = dict(spec, job_id=new_id("job"))
                spec.pop("presig_id")
                result = await self.coordinate(spec, items=dec)
            if spec.get("presig_id"):  # signed from a stored presignature (shown in the request)
                self.store.core.note_presignature(request_id, bytes.fromhex(spec["presig_id"]))
            sigs = [ecdsa.Signature.from_der(bytes.fromhex(d["der"]), recovery_id=d["recovery_id"])
                    for d in result["signatures"]]
            stored = {"signature": result["signatures"][0], "signatures": result["signatures"],
                      "public_key": dec.items[0].public_key.hex(), "result": None}
            if dec.payload_type != "digest":
                stored["result"] = payloads.assemble(dec, sigs)
            self.store.update_sign_request(request_id, status="signed", signature=stored)
            self.metrics.sign_request("signed")
            self._audit_quiet(actor, "signed", key_id=row["key_id"], subject=request_id,
                              digest=r.digest or r.payload_hash, decision="signed",
                              reason=f"{len(sigs)} signature(s)")
        except JobFailed as exc:
            self.store.update_sign_request(request_id, status="failed",
                                           error=exc.error.to_error())
            self.metrics.sign_request("failed")
            self._audit_quiet(actor, "sign_failed", key_id=row["key_id"], subject=request_id,
                              decision="failed", reason=exc.error.code)
        except Exception as exc:  # pragma: no cover - defensive
            log.exception("sign request %s crashed", request_id)
            self.store.update_sign_request(request_id, status="failed",
                                           error={"code": "internal", "message": type(exc).__name__})
            self.metrics.sign_request("failed")
        finally:
            if taken is not None:  # its key goes (used or not: a presignature is used once)
                self._spawn(self._destroy_presig_keys([taken.hsm_key_label]))
            self._notify(request_id)

    def _coordinator_fault(self, spec: dict, request) -> None:
        """Test-only (FaultPlan.coordinator_faults): what a malicious coordinator would send."""
        fault = self._fault(request)
        if fault == "forge-approval":
            for a in spec["approvals"]:
                a["signature"] = secrets.token_hex(64)
            if not spec["approvals"]:
                spec["approvals"] = []
        elif fault == "replay-approval":
            spec["approvals"] = self.store.last_approvals(spec["request_id"])
        elif fault == "substitute-digest":
            for it in spec["items"][:1]:
                it["digest"] = fault_digest(it["digest"])
            spec["digest"] = spec["items"][0]["digest"]

    async def get_sign_request(self, request_id: str, wait: float = 0.0, *,
                               forward: bool = True) -> dict:
        req = self._expire_if_due(self.store.get_sign_request(request_id))
        if req is None:
            if forward:  # kept by the node that received it (its coordinator): ask the others
                return await self._forward_to_owner(request_id, "GET", query={"wait": wait})
            raise ServiceError("not_found", "unknown sign request")
        if wait > 0 and req["status"] not in TERMINAL:
            await self._wait_for(request_id, wait)
            req = self._expire_if_due(self.store.get_sign_request(request_id))
        return self.sign_request_view(req)

    def pending_sign_requests(self) -> list[dict]:
        reqs = [self._expire_if_due(r) for r in self.store.list_sign_requests(("pending", "signing"))]
        return [self.sign_request_view(r) for r in reqs if r["status"] in ("pending", "signing")]

    # -- verify -------------------------------------------------------------------------

    def verify_signature(self, body: dict) -> dict:
        if not isinstance(body, dict):
            raise ServiceError("bad_body", "expected a JSON object")
        pub = body.get("public_key")
        if pub is None and body.get("key_id") is not None:
            row = self.store.get_key(str(body["key_id"]))
            if row is None or row["status"] != "active":
                raise ServiceError("not_found", "unknown key")
            pub = row["public_key"].hex()
        try:
            pk = bytes.fromhex(pub)
            digest = bytes.fromhex(body["digest"])
            sig_in = body["signature"]
            if isinstance(sig_in, str):
                sig = ecdsa.Signature.from_der(bytes.fromhex(sig_in))
            elif isinstance(sig_in, dict) and "der" in sig_in:
                sig = ecdsa.Signature.from_der(bytes.fromhex(sig_in["der"]))
            else:
                sig = ecdsa.Signature(int(sig_in["r"], 16), int(sig_in["s"], 16))
        except (KeyError, TypeError, ValueError, ApplianceError):
            raise ServiceError("bad_body", "need public_key or key_id (hex), digest (hex, 32 bytes) and "
                              "signature (DER hex, or {der} or {r, s})") from None
        if len(digest) != 32:
            raise ServiceError("bad_digest", "digest must be exactly 32 bytes")
        try:
            valid = ecdsa.verify(pk, digest, sig)
        except ApplianceError:
            raise ServiceError("bad_public_key", "public_key is not a valid secp256k1 point") from None
        return {"valid": bool(valid), "low_s": sig.is_low_s}

    # ===================================================================================
    # coordination

    async def coordinate(self, spec: dict, *, taken=None, items=None) -> dict:
        """Run a job with the parties of ``spec``; return the finished result or raise JobFailed.
        ``taken``: the coordinator's own presignature, already spent in its store. ``items``:
        for a sign job, what this node decoded itself (the digests it signs and checks)."""
        spec.setdefault("policy_hash", self.policy.hash)
        # every party checks this signature first (appliance/job_authority.py)
        sig = await self.hsm.sign_digest_async(job_digest(as_wire(spec)))
        spec[COORDINATOR_SIG] = sig.hex()
        job = JobRun(self, spec)
        job._presig_row = taken  # type: ignore[attr-defined]
        job._dec = items  # type: ignore[attr-defined]
        if not self.store.use_job_id(job.job_id):  # a session id is never run twice
            raise JobFailed(ServiceError("job_exists", "job id already used"))
        self.jobs[job.job_id] = job
        t0 = time.monotonic()
        kind = spec["kind"]
        outcome = None
        self._audit_quiet(self.me.id, f"{kind}_session_start", key_id=spec.get("key_id"),
                          subject=job.job_id, decision="started",
                          reason=",".join(self.node_ids(job.parties)))
        try:
            others = [p for p in job.parties if p != self.index]
            if self.index in job.parties:
                # start at once: messages to peers that have not opened the job yet wait there
                self._start_local(job)
            opened = await asyncio.gather(*(self._open_at(p, spec) for p in others), return_exceptions=True)
            failures = [(p, r) for p, r in zip(others, opened) if isinstance(r, BaseException)]
            if failures:
                missing = [p for p, r in failures if isinstance(r, PeerError) and r.status is None]
                for p in missing:
                    self.mark_unhealthy(p)
                if missing:
                    err = ServiceError("quorum_unreachable", "nodes did not answer the job",
                                    missing_nodes=self.node_ids(missing))
                else:
                    p, r = failures[0]
                    # a signer's refusal keeps its reason code
                    body_err = r.error if isinstance(r, PeerError) else {}
                    message = f"{self.peers[p].id} refused the job: {body_err.get('message', str(r))}"
                    err = (r.service_error(message) if isinstance(r, PeerError)
                           else ServiceError("peer_refused", message))
                await self._cancel_everywhere(job, err, others)
                raise JobFailed(err)
            result = await self._collect(job, others)
            self.metrics.jobs.labels(kind, "done").inc()
            return result
        except JobFailed as exc:
            self.metrics.jobs.labels(kind, "failed").inc()
            self._quarantine_culprits(exc.error, spec)
            outcome = exc.error.code
            raise
        finally:
            self._audit_quiet(self.me.id, f"{kind}_session_end", key_id=spec.get("key_id"),
                              subject=job.job_id, decision="failed" if outcome else "done",
                              reason=outcome)
            self.metrics.job_seconds.labels(kind, str(len(job.parties))).observe(time.monotonic() - t0)
            self._forget(job)

    async def _open_at(self, p: int, spec: dict) -> None:
        for attempt in range(2):
            try:
                await self.client.request(self.peers[p], "POST", peer_path("jobs"), json_body=spec, timeout=10.0)
                return
            except PeerError as exc:
                if exc.status is not None or attempt == 1:
                    raise
                await asyncio.sleep(0.05)

    async def _collect(self, job: JobRun, others: list[int]) -> dict:
        deadline = time.monotonic() + self.config.job_timeout_s
        while True:
            own_done = job.task is None or job.task.done()
            if own_done and job.task is not None:
                exc = job.task.exception() if not job.task.cancelled() else None
                if job.task.cancelled():
                    why = job.cancelled or {"code": "cancelled", "message": "the job was cancelled"}
                    raise JobFailed(ServiceError.from_error(why))
                if isinstance(exc, JobFailed):
                    await self._cancel_everywhere(job, exc.error, others)
                    raise exc
                if exc is not None:
                    log.error("job %s failed here", job.job_id, exc_info=exc)
                    err = ServiceError("internal", f"{type(exc).__name__}")
                    await self._cancel_everywhere(job, err, others)
                    raise JobFailed(err)
            failed = [r for r in job.reports.values() if not r.get("ok")]
            if failed:
                err = ServiceError.from_error(failed[0].get("error") or {})
                await self._cancel_everywhere(job, err, others)
                raise JobFailed(err)
            if own_done and set(job.reports) >= set(others):
                break
            if own_done and job.kind == "sign" and job.result is not None:
                break  # the own, verified signature is the result; late reports are ignored
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                missing = [p for p in others if p not in job.reports]
                err = ServiceError("job_timeout", "the job did not finish in time",
                                missing_nodes=self.node_ids(missing))
                if job.task is not None:
                    job.task.cancel()
                await self._cancel_everywhere(job, err, others)
                raise JobFailed(err)
            waiters = [asyncio.ensure_future(job.report_event.wait())]
            if job.task is not None and not job.task.done():
                waiters.append(job.task)
            done, pending = await asyncio.wait(waiters, timeout=min(remaining, 3.0),
                                               return_when=asyncio.FIRST_COMPLETED)
            for w in pending:
                if w is not job.task:
                    w.cancel()
            job.report_event.clear()
            if not done:
                # quiet for a while: a party whose process is gone fails the job now (named),
                # not at the job timeout
                silent = [p for p in others if p not in job.reports]
                _, down = await self.split_healthy(silent) if silent else ([], [])
                strikes = getattr(job, "_down_strikes", 0) + 1 if down else 0
                job._down_strikes = strikes  # type: ignore[attr-defined]
                if strikes >= 2:
                    err = ServiceError("quorum_unreachable", "a party stopped answering during the job",
                                    missing_nodes=self.node_ids(down))
                    if job.task is not None and not job.task.done():
                        job.task.cancel()
                    await self._cancel_everywhere(job, err, others)
                    raise JobFailed(err)
        return await self._finish(job, others)

    async def _finish(self, job: JobRun, others: list[int]) -> dict:
        spec = job.spec
        own = job.result
        reports = {p: r["result"] for p, r in job.reports.items()}
        if own is not None:
            reports[self.index] = own
        kind = spec["kind"]
        if kind == "reshare":
            reports = {p: r for p, r in reports.items() if not r.get("confirmed")}
        if kind in KEY_CHANGES:
            fps = {r.get("fingerprint") for r in reports.values()}
            pks = {r.get("public_key") for r in reports.values()}
            if len(fps) != 1 or len(pks) != 1:
                err = ServiceError("inconsistent_result", "the parties ended with different key states")
                await self._cancel_everywhere(job, err, others)
                raise JobFailed(err)
            pk = pks.pop()
            new_epoch = int(spec["epoch"]) + 1 if kind in ("refresh", "reshare") else \
                int(next(iter(reports.values()))["epoch"])
            # two phases: commit (new epoch in use, old shares kept) -> once every party
            # confirmed, finalize (old shares and presignatures destroyed)
            commit = await self._commit_everywhere(job.job_id, spec["key_id"], kind, new_epoch, job.parties)
            if kind == "reshare":
                return {"key_id": spec["key_id"], "public_key": pk, "threshold": spec["threshold"],
                        "nodes": self.node_ids(spec["new_members"]), "epoch": new_epoch, **commit}
            key = self.store.get_key(spec["key_id"])
            if key is not None and key["status"] == "active":
                out = {"key": self.key_view(key), "key_id": spec["key_id"], "public_key": pk,
                       "epoch": key["epoch"], **commit}
            else:
                out = {"key_id": spec["key_id"], "public_key": pk, "threshold": spec["threshold"],
                       "nodes": self.node_ids(spec["parties"]), "epoch": new_epoch, **commit}
            if kind == "import":
                out["recommendation"] = ("refresh this key now (POST /v1/keys/{key_id}/refresh): the "
                                         "dealer's machine saw the whole private key").replace("{key_id}",
                                                                                              spec["key_id"])
            return out
        if kind == "presign":
            held = getattr(job, "_presig_held", None)
            if held is not None:  # the leader's own part: usable only now that all have theirs
                self.store.add_presignature(*held)
                job._presig_held = None  # type: ignore[attr-defined]
            self._report_presignatures()
            return {"presig_id": own["presig_id"] if own else None}
        # sign: every signer reports the same signatures, and each verifies for the digest and
        # (derived) key this node computed itself
        seen = {tuple(tuple(sorted(d.items())) for d in r.get("signatures") or [r["signature"]])
                for r in reports.values()}
        if len(seen) != 1:
            raise JobFailed(ServiceError("inconsistent_result", "the signers produced different signatures"))
        sig_dicts = [dict(t) for t in next(iter(seen))]
        dec = getattr(job, "_dec", None)
        if dec is not None:
            checks = [(it.public_key, it.digest) for it in dec.items]
        else:
            key = self.store.get_key(spec["key_id"])
            checks = [(key["public_key"] if key else b"", bytes.fromhex(spec["digest"]))]
        if len(checks) != len(sig_dicts):
            raise JobFailed(ServiceError("inconsistent_result", "wrong number of signatures"))
        for (pk, digest), sig in zip(checks, sig_dicts):
            s = ecdsa.Signature.from_der(bytes.fromhex(sig["der"]), recovery_id=sig["recovery_id"])
            if not pk or not ecdsa.verify(pk, digest, s, strict_low_s=True):
                raise JobFailed(ServiceError("combined_signature_invalid", "the combined signature does not verify"))
        return {"signature": sig_dicts[0], "signatures": sig_dicts}

    async def _peer_post(self, p: int, path: URL, body: dict) -> None:
        try:
            await self.client.request(self.peers[p], "POST", path, json_body=body, timeout=5.0)
        except PeerError as exc:
            self.metrics.peer_errors.labels(self.peers[p].id).inc()
            log.info("peer call %s %s failed: %s", self.peers[p].id, path, exc)

    async def _cancel_everywhere(self, job: JobRun, err: ServiceError, others: list[int]) -> None:
        body = {"from": self.index, **err.to_error()}
        if job.task is not None and not job.task.done():
            job.cancelled = body
            job.task.cancel()
        self._abandon_local(job)
        await asyncio.gather(*(self._peer_post(p, peer_path("jobs", job.job_id, "cancel"), body)
                               for p in others), return_exceptions=True)

    def _forget(self, job: JobRun) -> None:
        self.jobs.pop(job.job_id, None)
        self._finished_jobs[job.job_id] = time.monotonic()

    # ===================================================================================
    # participating (also used by the coordinator for its own part)

    def _start_local(self, job: JobRun) -> None:
        job.task = asyncio.ensure_future(self._run_and_prepare(job))
        for item in self._early.pop(job.job_id, []):
            _, sender, frames = item
            self._spawn(self._deliver(job, sender, frames))

    async def accept_job(self, spec: dict, from_index: int) -> None:
        """A peer coordinator asks this node to take part (``POST /v1/peer/jobs``)."""
        if not self.ready:
            raise ServiceError("not_ready", f"{self.me.id} is not ready: {self.fault or 'starting'}")
        try:
            job_id = check_id("job_id", spec["job_id"])
            check_id("key_id", spec["key_id"])
            if spec.get("request_id") is not None:
                check_id("request_id", spec["request_id"])
            kind = spec["kind"]
            parties = [int(p) for p in spec["parties"]]
            coordinator = int(spec["coordinator"])
        except (KeyError, TypeError, ValueError):  # BadId is a ValueError
            raise ServiceError("bad_job", "malformed job description") from None
        if coordinator != from_index:
            raise ServiceError("forbidden", "a job must come from its coordinator")
        if kind not in JOB_AUTHORITY or self.index not in parties or not set(parties) <= set(self.peers):
            raise ServiceError("bad_job", "unknown kind or parties")
        # the rule (appliance/job_authority.py): no job without an authorizing statement that
        # this node checks itself -- first the coordinator's HSM identity signature over the
        # whole job, then (in _authorize_job) the user's signed request and its approvals
        if not coordinator_signature_ok(spec, from_index, self.directory):
            raise self._refuse(PolicyDenied("bad_coordinator_signature", "the job is not signed by its "
                               "coordinator's identity key"), actor=self.peers[from_index].id,
                               action=f"{kind}_job_refused", key_id=spec["key_id"], subject=job_id)
        if job_id in self.jobs or job_id in self._finished_jobs:
            if job_id in self.jobs and self.jobs[job_id].spec == spec:
                return
            raise ServiceError("job_exists", "job id already used")
        if not self.store.use_job_id(job_id):
            # never a job id (hence a protocol session id) twice: a replayed job is refused
            raise ServiceError("job_exists", "job id already used")
        # the policy: this node checks the request, approvals and payload itself
        checked = self._authorize_job(spec, from_index)
        if kind in ("keygen", "import"):
            if self.store.get_key(str(spec["key_id"])) is not None:
                raise ServiceError("key_exists", "key id already used")
            if spec.get("paillier_bits") not in (2048, 3072):
                raise ServiceError("bad_job", "paillier_bits must be 2048 or 3072")
            if kind == "import":  # refused here, naming the problem, before anything is stored
                await self._check_import_share(spec)
        elif kind == "reshare":
            row = self.store.get_key(str(spec["key_id"]))
            senders = [int(p) for p in spec.get("senders", [])]
            new = [int(p) for p in spec.get("new_members", [])]
            if sorted(set(senders) | set(new)) != sorted(parties) or spec.get("paillier_bits") not in (2048, 3072):
                raise ServiceError("bad_job", "malformed reshare")
            if self.index in senders:
                if row is None or row["status"] != "active" or int(spec.get("epoch", -1)) != row["epoch"]:
                    raise ServiceError("epoch_mismatch", "this node does not hold that key at that epoch")
            elif row is not None and row["status"] == "active" and row["epoch"] == int(spec.get("epoch", -1)):
                raise ServiceError("bad_job", "a holder of the key must be a sender")
        else:
            row = self.store.get_key(str(spec["key_id"]))
            if row is None or row["status"] != "active":
                raise ServiceError("unknown_key", "this node does not hold that key")
            if int(spec.get("epoch", -1)) != row["epoch"]:
                raise ServiceError("epoch_mismatch", "the key's epoch differs on this node")
            if not set(parties) <= set(row["participants"]):
                raise ServiceError("bad_job", "parties do not hold the key")
            if kind == "sign":
                digest = bytes.fromhex(str(spec.get("digest", "")))
                if len(digest) != 32:
                    raise ServiceError("bad_job", "digest must be 32 bytes")
                if len(parties) != row["threshold"]:
                    raise ServiceError("bad_job", "signer set must have threshold members")
        if kind in ("refresh", "reshare") and self._key_change_running(str(spec["key_id"])):
            raise ServiceError("key_change_in_progress", f"{self.me.id}: another change of this key is under way")
        dec = None
        if kind == "sign":
            # decoded here from the signed request, never the coordinator's digests
            dec = await self._authorize_sign_payload(spec, checked)
        rid = spec.get("request_id")
        self._audit(self.peers[from_index].id, f"join_{kind}", key_id=spec.get("key_id"),
                    subject=job_id, decision="accepted",
                    reason=f"request {rid}" if isinstance(rid, str) else None)
        job = JobRun(self, spec)
        job._dec = dec  # type: ignore[attr-defined]
        if kind == "sign":
            self._last_sign = time.monotonic()
        if spec.get("kind") == "sign" and spec.get("presig_id"):
            # spent durably before anything of it is used (a refused job spends nothing else)
            taken = self.store.take_presignature(bytes.fromhex(spec["presig_id"]), reserved=False)
            if taken is None or taken.key_id != spec["key_id"]:
                raise ServiceError("presignature_unavailable", "this node has no such presignature")
            job.spec = dict(spec)
            job._presig_row = taken  # type: ignore[attr-defined]
            self._report_presignatures()
        self.jobs[job_id] = job
        job.task = asyncio.ensure_future(self._participate(job))
        for item in self._early.pop(job_id, []):
            _, sender, frames = item
            self._spawn(self._deliver(job, sender, frames))

    async def _participate(self, job: JobRun) -> None:
        coord = int(job.spec["coordinator"])
        try:
            await self._run_and_prepare(job)
            report = {"from": self.index, "ok": True, "result": job.result, "dropped": job.dropped}
        except asyncio.CancelledError:
            self._abandon_local(job)
            self._forget(job)
            return
        except JobFailed as exc:
            self._quarantine_culprits(exc.error, job.spec)
            report = {"from": self.index, "ok": False, "dropped": job.dropped,
                      "error": exc.error.to_error()}
            self._abandon_local(job)
            # tell the other parties at once so that they stop waiting
            others = [p for p in job.parties if p not in (self.index, coord)]
            self._spawn(asyncio.gather(*(self._peer_post(p, peer_path("jobs", job.job_id, "cancel"),
                                                         {"from": self.index, **report["error"]})
                                         for p in others), return_exceptions=True))
        except Exception as exc:
            log.exception("job %s crashed", job.job_id)
            report = {"from": self.index, "ok": False,
                      "error": {"code": "internal", "message": type(exc).__name__}}
            self._abandon_local(job)
        self._audit_quiet(self.peers[coord].id, f"{job.kind}_session_end", key_id=job.spec.get("key_id"),
                          subject=job.job_id, decision="done" if report.get("ok") else "failed",
                          reason=None if report.get("ok") else report["error"].get("code"))
        if job.kind in KEY_CHANGES and report.get("ok"):
            # keep the job until the coordinator commits or cancels
            self._spawn(self._expire_pending(job))
        else:
            self._forget(job)
        await self._peer_post(coord, peer_path("jobs", job.job_id, "report"), report)

    async def _expire_pending(self, job: JobRun) -> None:
        await asyncio.sleep(self.config.job_timeout_s)
        if job.job_id in self.jobs:
            # no commit or cancel came: the prepared change stays; the lifecycle loop asks the
            # coordinator what it decided (the old epoch stays usable meanwhile)
            self._forget(job)

    # -- key changes: prepare -> commit -> finalize ---------------------------------------

    async def _run_and_prepare(self, job: JobRun) -> None:
        await self._run_job(job)
        if job.kind in KEY_CHANGES:
            self._prepare_local(job)

    def _crash(self, point: str) -> None:
        """Test-only fault injection (FaultPlan.crash_points): die here, as a power cut would."""
        if point in self.faults.crash_points:
            log.error("test-only crash point %s reached: exiting", point)
            os._exit(70)

    def _prepare_local(self, job: JobRun) -> None:
        """This party's part of a key change is done and sealed: record (fsynced) what it will
        commit, so that a restart or a lost commit message is resolved with the coordinator."""
        spec, res = job.spec, job.result or {}
        kind, key_id = spec["kind"], spec["key_id"]
        if kind in ("keygen", "import"):
            role, epoch, parts, t = "new", int(res.get("epoch", 0)), job.parties, int(spec["threshold"])
        elif kind == "refresh":
            row = self.store.get_key(key_id)
            role, epoch, parts, t = "member", int(spec["epoch"]) + 1, row["participants"], row["threshold"]
        else:
            parts, t, epoch = [int(p) for p in spec["new_members"]], int(spec["threshold"]), int(spec["epoch"]) + 1
            if res.get("confirmed"):
                role = "leaver"
            else:
                row = self.store.get_key(key_id)
                role = "new" if row is not None and row["status"] == "pending" else "member"
        self.store.prepare(key_id, job.job_id, kind, role, epoch, int(spec["coordinator"]), parts, t,
                           res.get("fingerprint"))
        self._crash(f"{kind}:prepared")

    def _key_change_running(self, key_id: str) -> bool:
        if any(j.kind in KEY_CHANGES and j.spec.get("key_id") == key_id for j in self.jobs.values()):
            return True
        p = self.store.pending(key_id) if self.store is not None else None
        return p is not None and p["state"] == "prepared" and time.time() - p["created"] < 2 * self.config.job_timeout_s

    def _commit_local(self, job_id: str) -> bool:
        """Put this node's prepared change of ``job_id`` in use (the old share stays until
        finalize). False if nothing was prepared for it."""
        p = self.store.commit_prepared(job_id)
        if p is None:
            return False
        key_id = p["key_id"]
        self._shares = {k: v for k, v in self._shares.items() if k[0] != key_id}
        self.audit.record(self.peers[p["coordinator"]].id, f"{p['kind']}_commit", key_id=key_id,
                          subject=job_id, decision="committed", reason=f"epoch {p['new_epoch']}, {p['role']}")
        self._presign_wakeup.set()
        self._report_presignatures()
        return True

    def _finalize_local(self, key_id: str, epoch: int, job_id: str) -> None:
        """Every party confirmed ``epoch``: this node's older sealed shares and presignatures go."""
        labels = self.store.finalize_key(key_id, epoch)
        self._shares = {k: v for k, v in self._shares.items() if not (k[0] == key_id and k[1] < epoch)}
        if labels:
            self._spawn(self._destroy_presig_keys(labels))
        self.audit.record(self.me.id, "key_finalized", key_id=key_id, subject=job_id, decision="finalized",
                          reason=f"shares and presignatures of epochs before {epoch} destroyed")
        self._report_presignatures()

    async def _peer_ok(self, p: int, path: URL, body: dict) -> bool:
        try:
            await self.client.request(self.peers[p], "POST", path, json_body=body, timeout=5.0)
            return True
        except PeerError as exc:
            self.metrics.peer_errors.labels(self.peers[p].id).inc()
            log.info("peer call %s %s failed: %s", self.peers[p].id, path, exc)
            return False

    async def _commit_everywhere(self, job_id: str, key_id: str, kind: str, new_epoch: int,
                                 parties: list[int]) -> dict:
        """The coordinator's commit: the decision is recorded (fsynced) first, then every party
        is told; finalize follows once all confirmed (else the lifecycle loop keeps trying)."""
        self.store.record_commit(job_id, key_id, kind, new_epoch, parties)
        if self.index in parties and self._commit_local(job_id):
            self.store.commit_progress(job_id, acked=[self.index])
        rec = await self._advance_commit(job_id)
        unconfirmed = [p for p in rec["parties"] if p not in rec["acked"]]
        return {"finalized": rec["state"] == "finalized", "unconfirmed_nodes": self.node_ids(unconfirmed)}

    async def _advance_commit(self, job_id: str) -> dict:
        rec = self.store.commit_record(job_id)
        if rec is None or rec["state"] == "finalized":
            return rec
        body = {"from": self.index, "key_id": rec["key_id"], "epoch": rec["new_epoch"]}
        todo = [p for p in rec["parties"] if p not in rec["acked"]]
        if self.index in todo:  # own commit (after a restart, say)
            if self._commit_local(job_id) or self._holds_epoch(rec["key_id"], rec["new_epoch"]):
                rec = self.store.commit_progress(job_id, acked=[self.index])
            todo.remove(self.index)
        oks = await asyncio.gather(*(self._peer_ok(p, peer_path("jobs", job_id, "commit"), body) for p in todo))
        rec = self.store.commit_progress(job_id, acked=[p for p, ok in zip(todo, oks) if ok])
        if not set(rec["acked"]) >= set(rec["parties"]):
            return rec  # someone has not confirmed the new epoch: every old share stays
        todo = [p for p in rec["parties"] if p not in rec["finalized"]]
        done = []
        if self.index in todo:
            self._finalize_local(rec["key_id"], rec["new_epoch"], job_id)
            done.append(self.index)
            todo.remove(self.index)
        oks = await asyncio.gather(*(self._peer_ok(p, peer_path("jobs", job_id, "finalize"), body) for p in todo))
        return self.store.commit_progress(job_id, finalized=done + [p for p, ok in zip(todo, oks) if ok])

    async def _reshare_senders(self, row: dict, candidates: list[int]) -> list[int]:
        """The reachable nodes that really hold the key at its current epoch (a node that lost
        its token and database, or runs an old backup, is a newcomer, not a sender)."""
        async def holds(p: int) -> bool:
            if p == self.index:
                return True
            try:
                v = await self.client.request(self.peers[p], "GET", peer_path("keys", row["key_id"]), timeout=10.0)
            except PeerError:
                return False
            return isinstance(v, dict) and v.get("status") == "active" and v.get("epoch") == row["epoch"]

        oks = await asyncio.gather(*(holds(p) for p in candidates))
        return [p for p, ok in zip(candidates, oks) if ok]

    def _holds_epoch(self, key_id: str, epoch: int) -> bool:
        """This node already runs ``epoch`` of the key (or has left its committee)."""
        row = self.store.get_key(key_id)
        return row is not None and (row["status"] == "retired" or
                                    (row["status"] == "active" and row["epoch"] >= epoch))

    async def _lifecycle_loop(self) -> None:
        """Resolve prepared changes whose commit or cancel never came (ask the coordinator), and
        as a coordinator, bring every committed change to every party and then finalize it."""
        while not self.stopping:
            await asyncio.sleep(self.lifecycle_interval)
            try:
                await self._resolve_prepared()
                for rec in self.store.open_commits():
                    if rec["job_id"] in self.jobs:
                        continue
                    row = self.store.get_key(rec["key_id"])
                    if row is None or (row["status"] == "active" and row["epoch"] > rec["new_epoch"]):
                        # superseded by a later change (whose finalize covers older epochs)
                        self.store.commit_progress(rec["job_id"], finalized=rec["parties"])
                        continue
                    await self._advance_commit(rec["job_id"])
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("key lifecycle housekeeping")

    def job_decision(self, job_id: str, from_index: int | None = None) -> dict:
        """``GET /v1/peer/jobs/{id}/decision``: what this coordinator decided about a key change."""
        if self.store.commit_record(job_id) is not None:
            return {"job_id": job_id, "decision": "commit"}
        if job_id in self.jobs:
            return {"job_id": job_id, "decision": "running"}
        return {"job_id": job_id, "decision": "abort"}  # never recorded a commit: it never will

    async def _resolve_prepared(self) -> None:
        for p in self.store.list_pending("prepared"):
            job_id = p["job_id"]
            if job_id in self.jobs or time.time() - p["created"] < self.lifecycle_interval:
                continue
            coord = p["coordinator"]
            if coord == self.index:
                decision = self.job_decision(job_id)["decision"]
            else:
                try:
                    body = await self.client.request(self.peers[coord], "GET",
                                                     peer_path("jobs", job_id, "decision"), timeout=5.0)
                except PeerError:
                    continue  # ask again later; the old epoch stays usable
                decision = body.get("decision") if isinstance(body, dict) else None
            if decision == "commit":
                self._commit_local(job_id)
            elif decision == "abort":
                labels = self.store.abandon_prepared(job_id)
                if labels:
                    self._spawn(self._destroy_presig_keys(labels))
                self.audit.record(self.peers[coord].id, f"{p['kind']}_abandoned", key_id=p["key_id"],
                                  subject=job_id, decision="abandoned",
                                  reason="the coordinator never committed it; the old epoch stays")
                self._presign_wakeup.set()

    async def _mark_destroyed(self, labels: list[str]) -> None:
        self.store.presignature_keys_destroyed(labels)

    async def _destroy_presig_keys(self, labels: list[str]) -> None:
        done = []
        for label in labels:
            try:
                await self.hsm.destroy_presignature_key_async(label)
                done.append(label)
            except Exception:  # retried at the next start-up
                log.info("could not destroy presignature key %s", label)
        self.store.presignature_keys_destroyed(done)



    def commit_job(self, job_id: str, from_index: int, body: dict | None = None) -> dict:
        """``POST /v1/peer/jobs/{id}/commit`` from the job's coordinator (idempotent: a repeated
        commit of a change already in use is confirmed again)."""
        body = body or {}
        job = self.jobs.get(job_id)
        p = self.store.pending_for_job(job_id)
        coord = p["coordinator"] if p is not None else (int(job.spec["coordinator"]) if job else None)
        if coord is not None and coord != from_index:
            raise ServiceError("forbidden", "only the job's coordinator commits it")
        if p is None:
            try:
                key_id, epoch = str(body["key_id"]), int(body["epoch"])
            except (KeyError, TypeError, ValueError):
                raise ServiceError("not_found", "unknown prepared change") from None
            if self._holds_epoch(key_id, epoch):
                return {"committed": True, "epoch": epoch}
            raise ServiceError("not_prepared", f"{self.me.id} has nothing prepared for job {job_id}")
        self._crash("commit")
        if p["state"] == "prepared":
            self._commit_local(job_id)
        if job is not None:
            self._forget(job)
        return {"committed": True, "epoch": p["new_epoch"]}

    def finalize_job(self, job_id: str, from_index: int, body: dict) -> dict:
        """``POST /v1/peer/jobs/{id}/finalize``: every party confirmed the new epoch; only the
        coordinator of a change this node committed may say so."""
        try:
            key_id, epoch = str(body["key_id"]), int(body["epoch"])
        except (KeyError, TypeError, ValueError):
            raise ServiceError("bad_body", "need key_id and epoch") from None
        p = self.store.pending_for_job(job_id)
        if p is None:
            return {"finalized": True}  # done before (or superseded by a later change)
        if p["coordinator"] != from_index or p["key_id"] != key_id or p["new_epoch"] != epoch:
            raise ServiceError("forbidden", "not the coordinator of this change")
        if p["state"] != "committed":
            raise ServiceError("not_committed", "this node has not committed that change")
        self._finalize_local(key_id, epoch, job_id)
        return {"finalized": True}

    async def peer_key_state(self, key_id: str) -> dict:
        """``GET /v1/peer/keys/{key_id}``: whether this node holds the key, at which epoch, and a
        hash of the key's public state as its share says (newcomers compare it)."""
        row = self.store.get_key(key_id)
        if row is None:
            return {"key_id": key_id, "status": "none"}
        out = {"key_id": key_id, "status": row["status"], "epoch": row["epoch"]}
        if row["status"] == "active":
            try:
                share = await self.load_share(row)
                out["public_state"] = hashlib.sha256(wire.encode(OldKeyInfo.of(share))).hexdigest()
            except Exception:  # a share that does not unseal: this node cannot send
                out["status"] = "unusable"
        return out

    def cancel_job(self, job_id: str, from_index: int, body: dict) -> None:
        job = self.jobs.get(job_id)
        if job is None:
            self._finished_jobs[job_id] = time.monotonic()
            self._early.pop(job_id, None)
            return
        if from_index not in job.parties and from_index != int(job.spec["coordinator"]):
            raise ServiceError("forbidden", "not a party of this job")
        fields = ("code", "message", "culprits", "missing_nodes", "denied", "status")  # status: an older peer's
        job.cancelled = {k: body.get(k) for k in fields if body.get(k) is not None}
        if job.task is not None and not job.task.done():
            job.task.cancel()
        if job.kind in KEY_CHANGES and from_index != int(job.spec["coordinator"]) \
                and self.store.pending_for_job(job_id) is not None:
            pass  # prepared: only the coordinator's decision undoes it (asked later if need be)
        else:
            self._abandon_local(job)
        self.audit.record(self.peers[from_index].id, f"{job.kind}_cancelled", key_id=job.spec.get("key_id"),
                          subject=job_id, decision="cancelled", reason=str(body.get("message", ""))[:200])
        if int(job.spec["coordinator"]) != self.index:
            self._forget(job)

    def _abandon_local(self, job: JobRun) -> None:
        """Undo what a job that will not finish left in the store."""
        spec = job.spec
        try:
            if spec["kind"] in KEY_CHANGES:
                labels: list[str] = []
                if self.store.pending_for_job(job.job_id) is not None:
                    labels = self.store.abandon_prepared(job.job_id)
                else:
                    other = self.store.pending(spec["key_id"])
                    if other is None or other["state"] != "prepared":
                        # stopped before it prepared: drop what it may have stored
                        row = self.store.get_key(spec["key_id"])
                        if row is not None and row["status"] == "pending":
                            labels = self.store.abandon_key(spec["key_id"])
                        elif row is not None:
                            self.store.drop_pending_share(spec["key_id"])
                if labels:
                    self._spawn(self._destroy_presig_keys(labels))
            elif spec["kind"] == "sign" and getattr(job, "_presig_row", None) is not None:
                self._spawn(self._destroy_presig_keys([job._presig_row.hsm_key_label]))
            elif spec["kind"] == "presign" and isinstance(job.result, dict):
                pid = bytes.fromhex(job.result["presig_id"])
                if getattr(job, "_presig_held", None) is None:
                    taken = self.store.take_presignature(pid, reserved=False)
                    if taken is None:
                        return
                job._presig_held = None  # type: ignore[attr-defined]
                self._spawn(self._destroy_presig_keys([presig_key_label(pid)]))
        except Exception:  # pragma: no cover
            log.exception("cleaning up job %s", job.job_id)

    def take_report(self, job_id: str, from_index: int, body: dict) -> None:
        job = self.jobs.get(job_id)
        if job is None or int(job.spec["coordinator"]) != self.index:
            return
        if from_index not in job.parties:
            raise ServiceError("forbidden", "not a party of this job")
        job.reports[from_index] = body
        job.report_event.set()

    # -- running the phases -----------------------------------------------------------


    async def _aux_and_stage(self, job: JobRun, spec: dict, share: KeyShare, rng, deadline) -> None:
        """Aux-info for a fresh share (after a DKG or an import), then seal and stage it
        until the coordinator commits the key."""
        bits = int(spec["paillier_bits"])
        primes = await self._take_primes(bits)
        keys = await self.cpu_call(generate_aux_keys, bits, primes, rng)
        sid = phase_sid(job.job_id, "aux")
        party = AuxParty(sid, share, keys, self.signer, self.directory, rng)
        share = await self._drive(job, sid, party, first_deadline=deadline)
        blob = await self.seal_share(spec["key_id"], share)
        self.store.put_pending_key(spec["key_id"], share.public_key, share.threshold,
                                   share.participants, share.epoch, bits, blob, share.chain_code)
        job.result = {"public_key": share.public_key.hex(), "epoch": share.epoch,
                      "fingerprint": share.public_fingerprint().hex()}
    async def _run_job(self, job: JobRun) -> None:
        spec = job.spec
        kind = spec["kind"]
        rng = SystemRNG()
        parties = job.parties
        deadline = time.monotonic() + self.config.job_timeout_s
        try:
            if kind in KEY_CHANGES:
                self._mark_request_used(spec)  # a key change runs once per signed request
            if kind == "keygen":
                sid = phase_sid(job.job_id, "keygen")
                party = KeygenParty(sid, self.index, parties, int(spec["threshold"]), self.signer,
                                    self.directory, rng)
                share = await self._drive(job, sid, party)
                await self._aux_and_stage(job, spec, share, rng, deadline)
            elif kind == "import":
                # the share was decrypted in the HSM and checked against the dealer's
                # commitments when the job was accepted; now aux-info, as after a DKG
                share = getattr(job, "_import_share", None) or await self._check_import_share(spec)
                await self._aux_and_stage(job, spec, share, rng, deadline)
            elif kind == "refresh":
                row = self.active_key(spec["key_id"])
                share = await self.load_share(row)
                bits = row["paillier_bits"]
                primes = await self._take_primes(bits)
                keys = await self.cpu_call(generate_aux_keys, bits, primes, rng)
                sid = phase_sid(job.job_id, "aux")
                party = AuxParty(sid, share, keys, self.signer, self.directory, rng, refresh=True)
                new = await self._drive(job, sid, party, first_deadline=deadline)
                if new.public_key != share.public_key:
                    raise JobFailed(ServiceError("inconsistent_result", "refresh changed the public key"))
                blob = await self.seal_share(spec["key_id"], new)
                self.store.put_pending_share(spec["key_id"], new.epoch, blob)
                job.result = {"public_key": new.public_key.hex(), "epoch": new.epoch,
                              "fingerprint": new.public_fingerprint().hex()}
            elif kind == "reshare":
                old = wire.decode(bytes.fromhex(spec["old_info"]), OldKeyInfo)
                senders, new_members = list(spec["senders"]), list(spec["new_members"])
                share = None
                if self.index in senders:
                    share = await self.load_share(self.active_key(spec["key_id"]))
                else:
                    await self._confirm_old_state(spec, old, senders)
                sid = phase_sid(job.job_id, "reshare")
                party = ReshareParty(sid, self.index, old, senders, new_members, int(spec["threshold"]),
                                     self.signer, self.directory, rng, share=share)
                out = await self._drive(job, sid, party)
                if isinstance(out, ReshareConfirmed):
                    job.result = {"public_key": out.public_key.to_bytes().hex(), "confirmed": True}
                else:
                    bits = int(spec["paillier_bits"])
                    primes = await self._take_primes(bits)
                    keys = await self.cpu_call(generate_aux_keys, bits, primes, rng)
                    sid = phase_sid(job.job_id, "aux")
                    aux_party = AuxParty(sid, out, keys, self.signer, self.directory, rng)
                    new = await self._drive(job, sid, aux_party, first_deadline=deadline)
                    blob = await self.seal_share(spec["key_id"], new)
                    if self.store.get_key(spec["key_id"]) is None:
                        self.store.put_pending_key(spec["key_id"], new.public_key, new.threshold,
                                                   new.participants, new.epoch, bits, blob, new.chain_code)
                    else:
                        self.store.put_pending_share(spec["key_id"], new.epoch, blob)
                    job.result = {"public_key": new.public_key.hex(), "epoch": new.epoch,
                                  "fingerprint": new.public_fingerprint().hex()}
            elif kind == "presign":
                row = self.active_key(spec["key_id"])
                share = await self.load_share(row)
                sid = phase_sid(job.job_id, "presign")
                party = await self.cpu_call(PresignParty, sid, share, parties, self.signer, self.directory, rng)
                presig = await self._drive(job, sid, party)
                ctx = SealContext.presignature(spec["key_id"], row["epoch"], presig.presig_id,
                                               presig.R.to_bytes(), presig.signers)
                blob = await self.hsm.seal_presignature_async(ctx, presig.to_bytes())
                held = (presig.presig_id, spec["key_id"], row["epoch"], presig.signers, presig.R.to_bytes(), blob)
                if int(spec["coordinator"]) == self.index:
                    job._presig_held = held  # type: ignore[attr-defined]
                else:
                    self.store.add_presignature(*held)
                    self._report_presignatures()
                job.result = {"presig_id": presig.presig_id.hex()}
            else:  # sign
                row = self.active_key(spec["key_id"])
                share = await self.load_share(row)
                dec = getattr(job, "_dec", None)  # what this node decoded itself
                if dec is None:
                    raise JobFailed(PolicyDenied("bad_request", "a sign job without a checked request"))
                items = list(dec.items)[:MAX_SIGN_ITEMS]

                async def presign_for(i: int):
                    if i == 0 and spec.get("presig_id"):
                        taken = getattr(job, "_presig_row", None)
                        if taken is None:
                            raise JobFailed(ServiceError("presignature_unavailable", "presignature gone"))
                        try:
                            data = await self.hsm.consume_presignature_async(taken.context, taken.sealed)
                        except Exception:
                            raise JobFailed(ServiceError("presignature_unavailable",
                                                      "presignature could not be unsealed")) from None
                        self._spawn(self._mark_destroyed([taken.hsm_key_label]))
                        return Presignature.from_bytes(data)
                    sid = phase_sid(job.job_id, "presign" + ("" if i == 0 else f"/{i}"))
                    party = await self.cpu_call(PresignParty, sid, share, parties, self.signer,
                                                self.directory, rng)
                    return await self._drive(job, sid, party)

                presigs = await asyncio.gather(*(presign_for(i) for i in range(len(items))))
                # durably: this node signs this request once, before a partial signature leaves
                self._mark_request_used(spec, dec.facts.amounts)
                sigs = []
                for i, (it, presig) in enumerate(zip(items, presigs)):
                    sid = phase_sid(job.job_id, "sign" + ("" if i == 0 else f"/{i}"))
                    party = SignParty(sid, share, presig, it.digest, self.signer, self.directory, rng,
                                      tweak=it.tweak)
                    sigs.append(await self._drive(job, sid, party))
                job.result = {"signature": sigs[0].to_dict(), "signatures": [x.to_dict() for x in sigs]}
        except ProtocolAbort as exc:
            culprits = self.node_ids(exc.culprits)
            raise JobFailed(ServiceError("protocol_abort", f"{exc.reason}"[:300], culprits=culprits)) from None
        except ServiceError as exc:
            raise JobFailed(exc) from None
        except PeerUnreachable as exc:
            raise JobFailed(ServiceError("quorum_unreachable", "a party could not be reached",
                                      missing_nodes=self.node_ids([exc.index]))) from None
        except Exception as exc:
            if isinstance(exc, HSMIntegrityError):
                raise JobFailed(ServiceError("sealed_data_corrupt",
                    f"{self.me.id}: sealed data of key {spec.get('key_id')} does not unseal (corrupt or "
                    "altered); nothing else is affected: other keys, and this key on the other nodes, "
                    "still sign")) from None
            if isinstance(exc, HSMError):
                raise JobFailed(ServiceError("hsm_unavailable",
                                          f"{self.me.id}: the HSM is not available ({exc})")) from None
            raise

    async def _confirm_old_state(self, spec: dict, old, senders: list[int]) -> None:
        """A node that does not hold the key takes its public state (public key, threshold,
        public shares, chain code) from the coordinator's job description. Before it accepts a
        share of that key it asks every other node (pinned mutual TLS) what it holds: at least the
        old threshold of holders, every sender among them, must report exactly this state at this
        epoch, and no holder another one. (Inside the protocol the same state is hashed into the
        round-1 setup that every party signs and echoes.)"""
        key_id, epoch = str(spec["key_id"]), int(spec["epoch"])
        want = hashlib.sha256(bytes.fromhex(spec["old_info"])).hexdigest()

        async def ask(p: int):
            try:
                return p, await self.client.request(self.peers[p], "GET", peer_path("keys", key_id), timeout=10.0)
            except PeerError:
                return p, None

        views = await asyncio.gather(*(ask(n.index) for n in self.cluster.nodes if n.index != self.index))
        held = [(p, v) for p, v in views if isinstance(v, dict) and v.get("status") == "active"
                and v.get("epoch") == epoch]
        agree = [p for p, v in held if v.get("public_state") == want]
        disagree = [p for p, v in held if v.get("public_state") != want]
        if disagree:
            raise JobFailed(ServiceError("old_state_mismatch",
                                      f"{self.me.id}: {', '.join(self.node_ids(disagree))} hold this key at epoch "
                                      f"{epoch} with another public state than the job describes"))
        if len(agree) < old.threshold or not set(senders) <= set(agree):
            raise JobFailed(ServiceError("old_state_unconfirmed",
                                      f"{self.me.id}: only {len(agree)} holders confirm the key's public state "
                                      f"(needs {old.threshold}, every sender among them)"))

    # -- key import -----------------------------------------------------------------------

    async def _check_import_share(self, spec: dict):
        """Decrypt this node's share of an import bundle inside the HSM and check it against the
        dealer's commitments; the KeyShare (no aux yet) or a ServiceError naming the problem."""
        try:
            bundle = parse_bundle(spec.get("bundle"), self.cluster)
        except ImportBundleError as exc:
            raise ServiceError("bad_import_bundle", f"{self.me.id}: {exc}") from None
        if bundle.parties != sorted(int(p) for p in spec["parties"]) or bundle.threshold != int(spec["threshold"]):
            raise ServiceError("bad_import_bundle", f"{self.me.id}: the job's parties or threshold differ "
                            "from the bundle's")
        env = bundle.envelopes.get(self.me.id)
        if env is None:
            raise ServiceError("bad_import_bundle", f"{self.me.id}: the bundle has no share for this node")
        try:
            data = await self.hsm.transport_decrypt_async(env, context=share_context(bundle.import_id, self.me.id))
        except (HSMError, ValueError):
            raise ServiceError("import_share_unreadable",
                            f"{self.me.id}: its share does not decrypt with this node's HSM transport key "
                            "(encrypted to another key, or altered)") from None
        if len(data) != 32:
            raise ServiceError("import_share_rejected", f"{self.me.id}: the share is not 32 bytes")
        try:
            share = await self.cpu_call(accept_share, bundle.import_id, self.index, bundle.parties,
                                        bundle.threshold, bundle.commitments, bundle.chain_code,
                                        int.from_bytes(data, "big"))
        except ImportError_ as exc:
            raise ServiceError("import_share_rejected", f"{self.me.id}: {exc}") from None
        finally:
            del data
        return share

    async def import_key(self, user, body: Any, request: Any = None) -> dict:
        """``POST /v1/keys/import``: a key change like a keygen. The body carries the bundle and
        the initiator's signed ``import`` request (params: the bundle's hash, public key,
        threshold and nodes), which must meet the policy's key-change quorum (else a pending
        operation that admins approve); every node re-checks the request, its approvals and
        the bundle before it does anything. Every node checks its own share before anything is
        stored; then aux-info. A refresh right after is recommended (the dealer's machine saw
        the whole key): the client library and ``appliance key submit-import --refresh`` ask
        for it as an ordinary signed refresh."""
        if not isinstance(body, dict):
            raise ServiceError("bad_body", "expected a JSON object")
        bundle = self._import_bundle(body.get("bundle"))
        bits = body.get("paillier_bits", self.config.paillier_bits)
        if bits not in (2048, 3072):
            raise ServiceError("bad_paillier_bits", "paillier_bits must be 2048 or 3072")
        spec_body = {"bundle": bundle.to_json(), "paillier_bits": bits}
        view, sr = await self._key_operation(user, "import", None, request_params(bundle), request,
                                             spec_body)
        if view is not None:
            return view
        return await self._launch_key_op("import", user.id, sr, [], spec_body)

    def _import_bundle(self, obj: Any):
        """The parsed bundle, refused if its public key is already held here."""
        try:
            bundle = parse_bundle(obj, self.cluster)
        except ImportBundleError as exc:
            raise ServiceError("bad_import_bundle", str(exc)) from None
        for k in self.store.list_keys(None):
            if k["public_key"] == bundle.public_key and k["status"] in ("active", "pending"):
                raise ServiceError("key_exists", f"this public key is already held as {k['key_id']}")
        return bundle

    async def _drive(self, job: JobRun, sid: bytes, party, *, first_deadline: float | None = None):
        """Run one state machine to its result (session and round durations in the metrics)."""
        t0 = time.perf_counter()
        outcome = "failed"
        try:
            out = await self._drive_session(job, sid, party, first_deadline=first_deadline)
            outcome = "done"
            return out
        except ProtocolAbort:
            outcome = "aborted"
            raise
        except JobFailed as exc:
            outcome = "timeout" if exc.error.code == "round_timeout" else "failed"
            raise
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            self.metrics.observe_session(party.PROTOCOL, outcome, time.perf_counter() - t0)

    async def _drive_session(self, job: JobRun, sid: bytes, party, *,
                             first_deadline: float | None = None):
        """Run one state machine to its result; messages arrive on the job's queue."""
        q = job.queues[sid]
        fast = party.PROTOCOL == "sign"
        out = await self.cpu_call(party.start, fast=fast)
        await self._send(job, party, out)
        rt = self.config.round_timeout_s
        cur = party.round
        round_t0 = time.perf_counter()
        deadline = first_deadline if first_deadline is not None else time.monotonic() + rt
        deadline = max(deadline, time.monotonic() + rt)
        while not party.done:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                got = job.received.get((sid, party.round), set())
                missing = [p for p in party.others if p not in got]
                raise JobFailed(ServiceError("round_timeout",
                                          f"{party.PROTOCOL} round {party.round} timed out",
                                          missing_nodes=self.node_ids(missing)))
            try:
                msg = await asyncio.wait_for(q.get(), remaining)
            except asyncio.TimeoutError:
                continue
            try:
                out = await self.cpu_call(party.receive, msg, fast=fast)
            except MessageRejected as exc:
                job.dropped += 1
                self.metrics.dropped.labels("rejected").inc()
                log.info("job %s: dropped a message claiming to be from %s: %s", job.job_id,
                         msg.sender, exc)
                continue
            job.received.setdefault((sid, msg.round), set()).add(msg.sender)
            if party.round != cur or party.done:
                now = time.perf_counter()
                self.metrics.observe_round(party.PROTOCOL, cur, now - round_t0)
                round_t0 = now
                cur = party.round
                deadline = time.monotonic() + rt
            if out:
                await self._send(job, party, out)
        return party.result

    async def _send(self, job: JobRun, party, out: list[Message]) -> None:
        if out:
            self.events.emit("round", job=job.job_id, protocol=party.PROTOCOL, round=out[0].round)
        delay = self.faults.delay_for(party.PROTOCOL)  # test-only: a slow peer
        if delay > 0:
            await asyncio.sleep(delay)
        by_peer: dict[int, list[dict]] = {}
        for m in out:
            targets = party.others if m.recipient is None else [m.recipient]
            for t in targets:
                frame = make_frame(job.job_id, m, t, self.peers[t].transport_key)
                by_peer.setdefault(t, []).extend(self._tamper(job, m, t, frame))
        results = await asyncio.gather(*(self._post_frames(job, p, frames) for p, frames in by_peer.items()),
                                       return_exceptions=True)
        for p, r in zip(by_peer, results):
            if isinstance(r, BaseException):
                self.mark_unhealthy(p)
                raise PeerUnreachable(p)

    async def _post_frames(self, job: JobRun, p: int, frames: list[dict]) -> None:
        body = encode_batch(job.job_id, self.index, frames)
        last: Exception | None = None
        for attempt in range(3):
            try:
                await self.client.request(self.peers[p], "POST", peer_path("jobs", job.job_id, "messages"),
                                          data=body, content_type="application/cbor", timeout=10.0)
                return
            except PeerError as exc:
                last = exc
                self.metrics.peer_errors.labels(self.peers[p].id).inc()
                if exc.status is not None:
                    return  # the peer answered: it dropped or refused the batch (its own decision)
                await asyncio.sleep(0.05 * (attempt + 1))
        raise last  # type: ignore[misc]

    # -- incoming protocol messages ----------------------------------------------------

    async def receive_frames(self, job_id: str, from_index: int, body: bytes) -> int:
        """``POST /v1/peer/jobs/{id}/messages``: queue the frames; returns how many were dropped."""
        try:
            bjob, sender, frames = decode_batch(body)
        except MessageRejected:
            self.metrics.dropped.labels("malformed").inc()
            raise ServiceError("bad_batch", "malformed message batch") from None
        if bjob != job_id or sender != from_index:
            self.metrics.dropped.labels("misrouted").inc()
            raise ServiceError("bad_batch", "batch does not match its route or sender")
        job = self.jobs.get(job_id)
        if job is None:
            if job_id in self._finished_jobs or self.store.job_id_used(job_id, older_than=60.0):
                # a job that ran (or was refused) here, however long ago: its sessions are over
                # (one seen in the last minute may still be being accepted: its frames wait)
                self.metrics.dropped.labels("finished").inc()
                return len(frames)
            if not self._early.add(job_id, from_index, frames, len(body)):  # bytes per peer
                self.metrics.dropped.labels("overflow").inc()
                return len(frames)
            return 0
        return await self._deliver(job, from_index, frames)

    async def _deliver(self, job: JobRun, from_index: int, frames: list) -> int:
        dropped = 0
        for raw in frames:
            try:
                frame = Frame.parse(raw)
                if frame.sender != from_index or frame.session_id not in job.phases:
                    raise MessageRejected("frame from another session or sender")
                if frame.recipient is not None and frame.recipient != self.index:
                    raise MessageRejected("frame for another node")
                data = frame.data
                if frame.encrypted:
                    ctx = frame_context(job.job_id, frame.session_id, frame.protocol, frame.round,
                                        frame.sender, self.index)
                    try:
                        data = await self.hsm.transport_decrypt_async(data, context=ctx)
                    except (HSMError, ValueError):
                        raise MessageRejected("direct message failed to decrypt") from None
                msg = Message.decode(data)
                frame.check(msg)
            except MessageRejected as exc:
                dropped += 1
                job.dropped += 1
                self.metrics.dropped.labels("frame").inc()
                log.info("job %s: dropped a frame from %s: %s", job.job_id, from_index, exc)
                continue
            job.queues[frame.session_id].put_nowait(msg)
        return dropped

    # -- test-only fault injection (FaultPlan.tamper: "alter", "replay", "bad_partial") --------

    def _tamper(self, job: JobRun, m: Message, t: int, frame: dict) -> list[dict]:
        if not self.faults.tamper:
            return [frame]
        out: list[dict] = []
        if "bad_partial" in self.faults.tamper and m.protocol == "sign" and m.round == 2:
            return [make_frame(job.job_id, _bad_partial(m, self.signer), t, self.peers[t].transport_key)]
        if "replay" in self.faults.tamper:
            # frames from an earlier job to this peer, re-sent into this job
            out += [f for (peer, jid, f) in self._sent_log[-6:] if peer == t and jid != job.job_id]
        if "alter" in self.faults.tamper:
            payload = bytearray(m.payload)
            if payload:
                payload[len(payload) // 2] ^= 0x01
            altered = Message(m.version, m.session_id, m.protocol, m.round, m.sender, m.recipient,
                              bytes(payload), m.signature)
            out.append(make_frame(job.job_id, altered, t, self.peers[t].transport_key))
            if frame["e"]:
                bad = dict(frame)
                d = bytearray(bad["d"])
                d[-1] ^= 0x01
                bad["d"] = bytes(d)
                out.append(bad)
        out.append(frame)
        if "replay" in self.faults.tamper:
            out.append(frame)  # the same frame twice
        self._sent_log.append((t, job.job_id, frame))
        del self._sent_log[:-32]
        return out

    # -- presignature pools -------------------------------------------------------------

    async def _presign_loop(self) -> None:
        target = self.config.presign_pool
        if target <= 0:
            return
        while not self.stopping:
            try:
                await asyncio.wait_for(self._presign_wakeup.wait(), 2.0)
            except asyncio.TimeoutError:
                pass
            self._presign_wakeup.clear()
            quiet = PRESIGN_QUIET_S - (time.monotonic() - self._last_sign)
            if quiet > 0 or any(j.kind == "sign" for j in self.jobs.values()):
                await asyncio.sleep(max(quiet, 0.05))
                self._presign_wakeup.set()
                continue
            try:
                await self._presign_round(target)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("presign pool: %s", exc)
                await asyncio.sleep(1.0)

    async def _presign_round(self, target: int) -> None:
        total = 0
        for row in self.store.list_keys("active"):
            if self.index not in row["participants"] or row["paillier_bits"] == 0:
                continue
            t = row["threshold"]
            for s in itertools.combinations(sorted(row["participants"]), t):
                if min(s) != self.index:
                    continue  # the lowest index of a signer set fills its pool
                if len(self.not_quarantined(s)) != len(s):
                    continue
                if self._key_change_running(row["key_id"]):
                    continue  # a refresh/reshare is about to replace this epoch
                have = self.store.count_presignatures(row["key_id"], list(s), epoch=row["epoch"])
                total += have
                tag = (row["key_id"], s)
                if have >= target or tag in self._presign_running:
                    continue
                healthy, missing = await self.split_healthy(s, max_age=5.0)
                if missing:
                    continue
                self._presign_running.add(tag)
                try:
                    spec = {"job_id": new_id("job"), "kind": "presign", "key_id": row["key_id"],
                            "parties": list(s), "epoch": row["epoch"], "coordinator": self.index}
                    await self.coordinate(spec)
                    total += 1
                except JobFailed as exc:
                    log.info("presign for %s failed: %s", s, exc.error.message)
                finally:
                    self._presign_running.discard(tag)
                self._presign_wakeup.set()
                return  # one at a time: signing requests come first
        self._report_presignatures()

    def _report_presignatures(self) -> None:
        """The presignatures gauge: presignatures available on this node at each key's current
        epoch (every signer set it belongs to), updated as they are made, spent or discarded."""
        if self.store is None:
            return
        try:
            counts = {row["key_id"]: self.store.count_presignatures(row["key_id"], epoch=row["epoch"])
                      for row in self.store.list_keys("active")}
        except Exception:  # pragma: no cover - a metric never breaks a job
            return
        m = self.metrics
        if hasattr(m, "set_presignature_counts"):
            m.set_presignature_counts(counts)
        elif hasattr(m, "presigs"):
            m.presigs.set(sum(counts.values()))

    def presign_counts(self, key_id: str) -> dict[str, int]:
        row = self.store.get_key(key_id)
        if row is None:
            return {}
        return {",".join(self.node_ids(s)): n for s, n in self.store.ready_signer_sets(key_id).items()}

    async def _housekeeping(self) -> None:
        while not self.stopping:
            await asyncio.sleep(5.0)
            now = time.monotonic()
            self._early.expire(60.0)
            for jid, t in list(self._finished_jobs.items()):
                if now - t > 600:
                    self._finished_jobs.pop(jid, None)

    # -- status -------------------------------------------------------------------------

    def status(self) -> dict:
        return {"node_id": self.me.id, "index": self.index, "ready": self.ready,
                "jobs": len(self.jobs), "primes": self.prime_counts() if self.store else {}}


def _bad_partial(m: Message, signer) -> Message:
    """Test-only tamper: this node's sign round-2 message with σ_i + 1, validly signed by it."""
    rp = wire.decode(m.payload, RoundPayload)
    body = wire.encode(SignR2((wire.decode(rp.body, SignR2).sigma + 1) % Q))
    bare = replace(m, payload=wire.encode(RoundPayload(body, rp.echo)), signature=b"")
    return replace(bare, signature=signer.sign(bare.signing_digest()))


def database_problem(path) -> str | None:
    """None if the node's database is sound (or new); else a clear description."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0)
        try:
            rows = con.execute("PRAGMA quick_check").fetchall()
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        return f"database {path.name} is unreadable ({exc}); restore it from a backup"
    if rows != [("ok",)]:
        detail = "; ".join(str(r[0]) for r in rows[:3])
        return f"database {path.name} is corrupt ({detail}); restore it from a backup"
    return None


class PeerUnreachable(Exception):
    def __init__(self, index: int) -> None:
        super().__init__(f"party {index} unreachable")
        self.index = index
