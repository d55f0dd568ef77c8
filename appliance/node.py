"""A signing node: the composition root. It builds the shared :class:`Runtime`, the peer client,
one :class:`appliance.ports.Opened` slot for each adapter opened at start (store, HSM, identity
signer, audit log) and the services (each in its own package), handing each service exactly
the ports it uses; at start it opens the adapters into the slots, starts the background tasks,
and stops them. api/ handlers reach the services as attributes (``node.signing.create(...)``)
and check readiness with ``node.store``, ``node.hsm`` and ``node.audit`` (None until open).

=============================  ==========================================================
``node.signing``               sign requests (appliance/signing/)
``node.keys``                  keygen, import, refresh, reshare, disable/enable/delete, operations (appliance/keys/)
``node.two_phase``             prepare -> commit -> finalize of key changes, lifecycle loop
``node.coordinator``           jobs this node coordinates (appliance/jobs/)
``node.participant``           jobs a peer coordinates
``node.frames``                protocol messages in and out
``node.pools`` ``node.primes``  presignature pool, prime supply (appliance/pools/)
``node.aux_pool``              aux-info made ahead of ECDSA keys, per committee
``node.health``                peer and HSM health (appliance/cluster/)
``node.quarantine``            nodes left out of quorums
``node.policy_sync``           the policy in force, its updates, catching up with peers
``node.cert_rotation``         the pinned TLS certificates in force, their signed updates
``node.cosigning``             the audit log's checkpoints co-signed by the peers
``node.request_use``           a sign request reserved once, cluster-wide
``node.request_claims``        one request per (initiator, nonce), cluster-wide (idempotency)
``node.gauges``                the gauges set when /metrics is scraped
=============================  ==========================================================
"""

from __future__ import annotations

import asyncio
import logging

from appliance.bounded import check_recursion_limit
from appliance.cluster.cert_rotation import CertRotation
from appliance.cluster.cosign import AuditCosigning
from appliance.cluster.gauges import NodeGauges
from appliance.cluster.health import PeerHealth
from appliance.cluster.policy_sync import PolicySync, base_policy
from appliance.cluster.quarantine import QuarantineService
from appliance.config import NodeConfig
from appliance.db_check import database_problem
from appliance.errors import ServiceError
from appliance.faults import NO_FAULTS, FaultPlan
from appliance.jobs.authorization import JobAuthorizer
from appliance.jobs.coordinator import Coordinator
from appliance.jobs.driver import SessionDriver
from appliance.jobs.frames import FrameExchange
from appliance.jobs.kinds import JobKind
from appliance.jobs.local import LocalRun
from appliance.jobs.participant import Participant
from appliance.jobs.table import JobTable
from appliance.keys.key_jobs import KeyChangeJob
from appliance.keys.service import KeyService
from appliance.keys.shares import ShareVault
from appliance.keys.two_phase import TwoPhase
from appliance.audit import AuditLog
from appliance.metered_hsm import MeteredHSM
from appliance.storage import NodeStore
from appliance.ports import NO_EVENTS, SYSTEM_CLOCK, Clock, EventSink, Opened
from appliance.pools.aux_pool import AuxGenJob, AuxPool
from appliance.pools.frost_nonce_job import FrostNonceFiller, FrostNonceJob
from appliance.pools.frost_nonces import FrostNoncePool
from appliance.pools.presign import PresignPool
from appliance.jobs.progress import ProgressBoard
from appliance.keys.lifecycle import KINDS as LIFECYCLE_KINDS
from appliance.keys.lifecycle import LifecycleJob
from appliance.pools.presign_job import PresignJob
from appliance.pools.primes import PrimeSupply
from appliance.presig_keys import destroy_spent_presignature_keys
from appliance.recorder import Recorder
from appliance.request_claims import RequestClaims
from appliance.request_use import RequestUse
from appliance.runtime import HSMSigner, Runtime
from appliance.signing.approval_statements import ApprovalStatements
from appliance.signing.reading import PayloadReader
from appliance.signing.requests import SignRequests
from appliance.signing.sign_job import SignJob
from appliance.transport import PeerClient
from hsm import HSM
from hsm.errors import (HSMConfigError, HSMError, HSMModuleError, HSMPinError, HSMTokenNotFoundError,
                        HSMUnavailableError)

log = logging.getLogger("appliance.node")

_SHARED = ("config", "cluster", "me", "index", "peers", "directory", "metrics", "faults", "clock", "events", "cpu",
           "fast", "audit_ok", "policy", "ready", "stopping", "fault")


class Node:
    def __init__(self, config: NodeConfig, *, faults: FaultPlan = NO_FAULTS, clock: Clock = SYSTEM_CLOCK,
                 events: EventSink = NO_EVENTS) -> None:
        rt = self.rt = Runtime(config, faults=faults, clock=clock, events=events)
        rt.policy = base_policy(config)  # plus the stored updates, at start
        # the adapters: the peer client now, the others opened at start (appliance/runtime.py)
        self.client = link = PeerClient(config, on_connect=rt.metrics.peer_connection_opened,
                                        on_call=lambda s: rt.metrics.observe_stage("peer_call", s))
        self.opened_store: Opened[NodeStore] = Opened("store")
        self.opened_hsm: Opened[MeteredHSM] = Opened("HSM")
        self.opened_signer: Opened[HSMSigner] = Opened("identity signer")
        self.opened_audit: Opened[AuditLog] = Opened("audit log")
        store, hsm, signer, audit = self.opened_store, self.opened_hsm, self.opened_signer, self.opened_audit
        self.recorder = Recorder(rt, audit, store)
        self.health = PeerHealth(rt, link, hsm)
        self.quarantine = QuarantineService(rt, self.recorder, audit)
        self.request_use = RequestUse(rt, key_store=store, replay=store, hsm=hsm, peers=link)
        self.request_claims = RequestClaims(rt, replay=store, peers=link, seen=self.health.note)
        self.table = JobTable()
        kinds: dict[str, JobKind] = {}
        self.frames = FrameExchange(rt, self.table, self.health, hsm=hsm, signer=signer, replay=store, peers=link)
        # what each key operation coordinated here is doing (GET /v1/operations/{id} progress)
        self.progress = ProgressBoard(rt.index, rt.clock, rt.waiters.notify)
        self.driver = SessionDriver(rt, self.frames, self.progress)
        self.local = LocalRun(rt, self.frames, kinds, peers=link)
        self.coordinator = Coordinator(rt, self.table, self.local, kinds, self.health, self.quarantine,
                                       self.recorder, hsm=hsm, replay=store, peers=link, progress=self.progress)
        self.shares = ShareVault(rt, key_store=store, hsm=hsm)
        self.primes = PrimeSupply(rt, primes=store, hsm=hsm)
        self.pools = PresignPool(rt, self.health, self.quarantine, self.coordinator.run,
                                 signing_now=lambda: self.table.any_of_kind("sign"),
                                 key_change_running=lambda key_id: self.two_phase.key_change_running(key_id),
                                 key_store=store, presigs=store, hsm=hsm)
        self.two_phase = TwoPhase(rt, self.table, self.local, self.shares, self.pools, key_store=store,
                                  changes=store, audit=audit, peers=link)
        self.reader = PayloadReader(rt, replay=store)
        self.aux_pool = AuxPool(rt, self.health, self.coordinator.run, lambda: self.pools.last_sign,
                                signing_now=lambda: self.table.any_of_kind("sign"), aux_store=store, hsm=hsm)
        key_jobs = KeyChangeJob(rt, self.driver, self.shares, self.primes, self.two_phase, self.pools,
                                key_store=store, changes=store, replay=store, hsm=hsm, signer=signer, peers=link,
                                aux=self.aux_pool, aux_store=store, progress=self.progress)
        kinds["aux_gen"] = AuxGenJob(rt, self.driver, self.primes, self.aux_pool, aux_store=store, hsm=hsm,
                                     signer=signer)
        kinds.update({kind: key_jobs for kind in ("keygen", "refresh", "reshare", "import")})
        lifecycle = LifecycleJob(rt, self.two_phase, self.pools, key_store=store, changes=store, replay=store,
                                 audit=audit)
        kinds.update({kind: lifecycle for kind in LIFECYCLE_KINDS})
        self.nonce_pool = FrostNoncePool(rt, nonces=store, hsm=hsm, key_store=store)
        self.nonce_filler = FrostNonceFiller(rt, self.health, self.shares, self.nonce_pool, self.pools,
                                             self.coordinator.run, signing_now=lambda: self.table.any_of_kind("sign"),
                                             key_change_running=lambda key_id: self.two_phase.key_change_running(key_id),
                                             key_store=store)
        kinds["frost_nonces"] = FrostNonceJob(rt, self.shares, self.nonce_pool)
        kinds["presign"] = PresignJob(rt, self.driver, self.shares, self.pools, presigs=store, hsm=hsm,
                                      signer=signer)
        kinds["sign"] = SignJob(rt, self.driver, self.shares, self.pools, self.reader, self.recorder,
                                key_store=store, presigs=store, replay=store, hsm=hsm, signer=signer,
                                nonce_pool=self.nonce_pool)
        self.keys = KeyService(rt, self.recorder, self.shares, self.health, key_jobs, self.coordinator.run,
                               key_store=store, operations=store, statements=store, peers=link,
                               claims=self.request_claims, progress=self.progress)
        self.signing = SignRequests(rt, self.recorder, self.shares, self.reader, self.health, self.quarantine,
                                    self.request_use, self.pools, self.coordinator.run, self.request_claims,
                                    requests=store,
                                    statements=store, key_store=store, presigs=store, peers=link,
                                    nonce_pool=self.nonce_pool, replay=store)
        self.approval_statements = ApprovalStatements(rt, self.signing.get)  # what a passkey signs
        self.policy_sync = PolicySync(rt, self.recorder, [self.signing.expire_all_pending, self.keys.fail_pending],
                                      updates=store, peers=link)
        self.cert_rotation = CertRotation(rt, self.recorder, self.policy_sync.history, updates=store, peers=link)
        self.cert_rotation.listeners.append(link.retire)  # new pins: new TLS sessions
        self.cosigning = AuditCosigning(rt, self.recorder, audit=audit, signer=signer, peers=link, store=store)
        self.gauges = NodeGauges(rt, self.health, self.primes, requests=store, key_store=store, audit=audit)
        authorizer = JobAuthorizer(rt, self.recorder, self.request_use, self.reader.rate_usage,
                                   self.policy_sync.catch_up_soon, key_store=store, replay=store)
        self.participant = Participant(rt, self.table, self.local, kinds, authorizer, self.quarantine,
                                       self.recorder, on_sign=self.pools.signed, replay=store, changes=store,
                                       audit=audit)

    # the adapters opened at start (None before): api/ checks readiness with them
    store = property(lambda self: self.opened_store.value, lambda self, v: self.opened_store.set(v))
    hsm = property(lambda self: self.opened_hsm.value, lambda self, v: self.opened_hsm.set(v))
    signer = property(lambda self: self.opened_signer.value, lambda self, v: self.opened_signer.set(v))
    audit = property(lambda self: self.opened_audit.value, lambda self, v: self.opened_audit.set(v))

    def __getattr__(self, name: str):
        # the shared state (config, policy, metrics, flags, ...) lives in the runtime
        if name in _SHARED:
            return getattr(self.rt, name)
        raise AttributeError(name)

    def __setattr__(self, name: str, value) -> None:
        if name in _SHARED:
            setattr(self.rt, name, value)
        else:
            super().__setattr__(name, value)

    # -- life cycle -----------------------------------------------------------------------

    async def start(self) -> None:
        rt = self.rt
        check_recursion_limit()  # a raised limit lets a deep body overflow the C stack
        problem = database_problem(rt.config.db)
        if problem is not None:
            # fail closed but stay up: /healthz answers, /readyz says why, nothing is signed
            rt.fault = problem
            log.error("%s", problem)
            return
        self.store = NodeStore(rt.config.db, clock=rt.clock.now)
        self.store.database.on_commit = rt.metrics.sqlite_committed
        self.store.recover_after_restart({"code": "node_restarted",
                                          "message": "the node stopped while this was running"})
        self.policy_sync.open()
        self.cert_rotation.open()
        problem = self.cosigning.open()
        if problem is not None:  # e.g. two different audit logs: not ready, /readyz says why
            rt.fault = problem
            log.error("%s", problem)
            return
        hcfg = rt.config.hsm_config()
        if hcfg.identity_curve != "secp256k1":
            raise ServiceError("bad_config", "the identity key must be secp256k1")
        try:
            hsm = await HSM.open_async(hcfg, node_id=rt.me.id)
        except (HSMPinError, HSMTokenNotFoundError, HSMUnavailableError, HSMModuleError, HSMConfigError) as exc:
            # wrong PIN, token directory gone...: not ready (503) and retried, never a crash
            rt.fault = f"HSM unavailable: {exc}"
            log.error("%s; retrying", rt.fault)
            rt.spawn(self._open_hsm_later(hcfg))
            return
        await self._started_with(hsm)

    async def _open_hsm_later(self, hcfg) -> None:
        rt = self.rt
        delay = 1.0
        while not rt.stopping:
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 5.0)
            try:
                hsm = await HSM.open_async(hcfg, node_id=rt.me.id)  # re-reads the PIN file
            except HSMError as exc:
                rt.fault = f"HSM unavailable: {exc}"
                continue
            await self._started_with(hsm)
            log.info("HSM available again; node ready")
            return

    async def _started_with(self, hsm) -> None:
        rt = self.rt
        self.hsm = MeteredHSM(hsm, rt.metrics)
        rt.fault = None
        if self.hsm.identity_public_key != rt.me.identity_key:
            raise ServiceError("bad_config", "the HSM identity key differs from the cluster configuration")
        if self.hsm.transport_public_key != rt.me.transport_key:
            raise ServiceError("bad_config", "the HSM transport key differs from the cluster configuration")
        self.signer = HSMSigner(self.hsm)
        # presignatures reserved by a process that died are burnt; spent ones lose their key
        await asyncio.get_running_loop().run_in_executor(None, destroy_spent_presignature_keys,
                                                         self.store.core, self.hsm)
        self.primes.start()
        rt.spawn(self.pools.loop())
        rt.spawn(self.aux_pool.loop())
        rt.spawn(self.nonce_filler.loop())
        rt.spawn(self._housekeeping())
        rt.spawn(self.two_phase.loop())
        self.pools.report()
        self.aux_pool.report()
        self.nonce_pool.on_change()
        rt.spawn(self.cosigning.loop())
        rt.spawn(self.policy_sync.catch_up())
        rt.spawn(self.cert_rotation.catch_up())
        self.recorder.quiet(rt.me.id, "node_start", decision="started",
                            reason=f"policy version {rt.policy.version}")
        rt.ready = True

    async def _housekeeping(self) -> None:
        while not self.rt.stopping:
            await asyncio.sleep(5.0)
            self.table.expire()

    async def stop(self) -> None:
        rt = self.rt
        rt.stopping = True
        rt.ready = False
        for job in list(self.table.running.values()):
            if job.task is not None:
                job.task.cancel()
        for t in list(rt.bg):
            t.cancel()
        await asyncio.gather(*rt.bg, return_exceptions=True)
        if self.audit is not None:
            self.recorder.quiet(rt.me.id, "node_stop", decision="stopped")
            await self.cosigning.final()
        await self.client.close()
        if self.audit is not None:
            self.audit.close()  # (checkpoints the head if anything came after)
        if self.hsm is not None:
            await self.hsm.close_async()
        if self.store is not None:
            self.store.close()
        rt.shutdown_pools()
