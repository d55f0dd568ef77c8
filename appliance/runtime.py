"""What every service of a node shares: its configuration and place in the cluster (``me``,
``index``, ``peers``, ``directory``), the policy in force, the plumbing passed in (clock,
events, faults), the metrics, long-poll waiters, the worker pools, the background tasks and
the ready/stopping/fault flags. Nothing else: no store, HSM, peer client or audit log.

A service takes the ports it uses (:mod:`appliance.ports`) as constructor arguments, typed by
those Protocols, besides this :class:`Runtime`. The store, the HSM, the identity signer and
the audit log are only opened in :meth:`appliance.node.Node.start` (the database is checked
first, the HSM may be away and is retried), while the services are built once, in
``Node.__init__``, because api/ reaches them from the first request (``/healthz``,
``/readyz``, and the 503 ``not_ready`` answers stay exactly as they were). So each of those
four adapters sits in an :class:`appliance.ports.Opened` slot that the composition root fills
at start; a service holds the slots of its ports (typed ``Late[SomePort]``) and calls one when
it needs the adapter (``self.requests().get_sign_request(rid)``), which is ``not_ready``
before start. We chose this over building the services at start because the services must
exist while the HSM is away (the stop path, the readiness answers, tests that run a node
without an HSM), and a slot per port keeps each service's dependencies narrow and named.

:class:`appliance.node.Node` (the composition root) builds one :class:`Runtime`, the slots
and the services.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, Callable

import gmpy2

from appliance.config import NodeConfig, PeerInfo
from appliance.errors import ServiceError
from appliance.faults import FaultPlan
from appliance.hardening import disable_core_dumps
from appliance.metrics import Metrics
from appliance.ports import Clock, EventSink
from appliance.tss.group import Q
from appliance.tss.protocol import SEQUENTIAL, CheckExecutor, IdentityDirectory

log = logging.getLogger("appliance.node")


def _init_cpu_thread() -> None:
    gmpy2.get_context().allow_release_gil = True


#: how much lower a background worker thread runs (``nice`` steps): pool refills (presign,
#: pooled FROST nonces) get what signing leaves of the cores, never the other way round
BACKGROUND_NICE = 10
#: the job kinds whose protocol steps run on the background lane (pool refills: presignatures,
#: pooled FROST nonces, pooled aux-info)
BACKGROUND_KINDS = frozenset({"presign", "frost_nonces", "aux_gen"})


def lane(kind: str, protocol: str) -> dict[str, bool]:
    """The :meth:`Runtime.cpu_call` keywords for a protocol step of a job of ``kind``: the
    online sign rounds on the ``fast`` threads, a pool refill's steps on the ``background``
    (lower priority) threads, anything else (keygen, aux-info, a presign a sign job waits for)
    on the protocol threads."""
    fast = protocol == "sign"
    return {"fast": fast, "background": not fast and kind in BACKGROUND_KINDS}


def _init_background_thread() -> None:
    """A refill worker: this thread alone (Linux schedules threads, so ``setpriority`` on its
    own thread id leaves the event loop and the signing threads as they are) runs
    ``BACKGROUND_NICE`` steps lower."""
    _init_cpu_thread()
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + BACKGROUND_NICE)
    except (OSError, AttributeError):  # pragma: no cover - a platform without per-thread priorities
        pass


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, so a node pinned with taskset
    counts only its own)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no sched_getaffinity on this platform
        return max(1, os.cpu_count() or 1)


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


class HSMSigner:
    """The node's HSM identity key as a protocol message signer (secp256k1, low-S r||s): the
    :class:`appliance.ports.IdentitySigner` of a node."""

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


class Waiters:
    """Long-polls: a reader waits on an id (a sign request, an operation) until it changes."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    async def wait(self, ident: str, wait: float) -> None:
        ev = self._events.setdefault(ident, asyncio.Event())
        try:
            await asyncio.wait_for(ev.wait(), min(wait, 60.0))
        except asyncio.TimeoutError:
            pass

    def notify(self, ident: str) -> None:
        ev = self._events.pop(ident, None)
        if ev is not None:
            ev.set()


class Runtime:
    def __init__(self, config: NodeConfig, *, faults: FaultPlan, clock: Clock, events: EventSink) -> None:
        self.config = config
        self.cluster = config.cluster
        self.me: PeerInfo = config.me
        self.index = self.me.index
        self.peers: dict[int, PeerInfo] = {n.index: n for n in self.cluster.nodes}
        self.directory = IdentityDirectory({n.index: n.identity_key for n in self.cluster.nodes})
        self.metrics = Metrics(peers=[n.id for n in self.cluster.nodes])
        self.faults = faults  # test-only fault injection (appliance/faults.py); production: none
        self.clock = clock  # policy time (validity windows, expiry)
        self.events = events  # what tests wait on instead of sleeping (appliance/ports.py)
        self.waiters = Waiters()
        self.audit_ok = True  # the last audit write succeeded
        self.policy: Any = None  # Policy in force
        self.ready = False
        self.stopping = False
        self.fault: str | None = None  # why the node is not ready (HSM away, database corrupt)
        self.cpu = ThreadPoolExecutor(max(1, config.workers), thread_name_prefix="tss",
                                      initializer=_init_cpu_thread)
        # signing from a presignature is cheap: it never waits behind a presign or aux step
        self.fast = ThreadPoolExecutor(2, thread_name_prefix="sign", initializer=_init_cpu_thread)
        # pool refills (BACKGROUND_KINDS) at a lower OS priority: a presign step that is under
        # way when a signature is asked for yields the cores to it instead of competing
        self.background = ThreadPoolExecutor(max(1, config.workers), thread_name_prefix="refill",
                                             initializer=_init_background_thread)
        # a presign round checks its peers' proofs in parallel on these threads (gmpy2 releases
        # the GIL in powmod): sized to the cores this process may run on, started once; a pool
        # refill's presign checks on the lower-priority ones, so it still yields to signing
        cores = usable_cores()
        self._check_pools = [
            ThreadPoolExecutor(cores, thread_name_prefix=name, initializer=init)
            for name, init in (("verify", _init_cpu_thread), ("refill-verify", _init_background_thread))
        ] if cores > 1 else []
        self.checks: CheckExecutor = self._check_pools[0] if self._check_pools else SEQUENTIAL
        self.background_checks: CheckExecutor = self._check_pools[1] if self._check_pools else SEQUENTIAL
        self._procs: ProcessPoolExecutor | None = None
        self.bg: set[asyncio.Task] = set()

    def spawn(self, coro) -> asyncio.Task:
        t = asyncio.ensure_future(coro)
        self.bg.add(t)
        t.add_done_callback(self.bg.discard)
        return t

    async def cpu_call(self, fn: Callable, *args: Any, fast: bool = False, background: bool = False) -> Any:
        """``fn(*args)`` on a worker thread: ``fast`` (online signing), ``background`` (pool
        refills, lower OS priority) or the protocol pool (everything else)."""
        pool = self.fast if fast else self.background if background else self.cpu
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    @property
    def procs(self) -> ProcessPoolExecutor:
        if self._procs is None:
            self._procs = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                              initializer=_init_prime_process)
        return self._procs

    def shutdown_pools(self) -> None:
        self.cpu.shutdown(wait=False, cancel_futures=True)
        self.fast.shutdown(wait=False, cancel_futures=True)
        self.background.shutdown(wait=False, cancel_futures=True)
        for pool in self._check_pools:
            pool.shutdown(wait=False, cancel_futures=True)
        if self._procs is not None:
            # a prime search can take seconds: stop it rather than wait for it
            for proc in list(getattr(self._procs, "_processes", {}).values()):
                try:
                    proc.terminate()
                except Exception:
                    pass
            self._procs.shutdown(wait=False, cancel_futures=True)

    def node_ids(self, indices) -> list[str]:
        return [self.peers[i].id for i in sorted(indices) if i in self.peers]

    def index_of(self, node_id: str) -> int:
        for n in self.cluster.nodes:
            if n.id == node_id:
                return n.index
        raise ServiceError("unknown_node", f"unknown node {node_id!r}")

    def node_keys(self) -> dict[str, bytes]:
        return {n.id: bytes(n.identity_key) for n in self.cluster.nodes}
