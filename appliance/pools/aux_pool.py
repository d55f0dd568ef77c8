"""The aux-info pool: Paillier and ring-Pedersen data made ahead of ECDSA keys, per committee
(the ordered node set), so that creating a key runs only its DKG.

``[aux] pool`` aux-info records with room for another key are kept ready for the whole
cluster's committee, and another is made when they can take fewer than ``[aux] low_water``
keys; its lowest-index node makes them in the background (an ``aux_gen`` job:
the key-independent aux session, :meth:`appliance.tss.aux.AuxParty.pooled`) while signing is
quiet. Each party seals its :class:`appliance.tss.keyshare.PooledAux` under its HSM (kind
``aux``, key id = the aux id) and stores it; the coordinator stores its own only once every
party reported the same public data (as a presign leader does). One aux-info serves at most
``[aux] keys_per_aux`` keys (README, Protocol: "Aux-info made ahead of keys"); a keygen binds
its key to the aux-info in the transaction that stages the key (appliance/storage/aux_info.py).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from appliance.cluster.health import PeerHealth
from appliance.errors import ServiceError
from appliance.ids import is_id, new_id
from appliance.jobs.driver import SessionDriver
from appliance.jobs.kinds import Cancel
from appliance.jobs.model import JobFailed, JobRun, phase_sid
from appliance.pools.primes import PrimeSupply
from appliance.pools.refill import refill_loop
from appliance.ports import AuxStore, IdentitySigner, Late, Sealer
from appliance.runtime import Runtime
from appliance.sealed import SealContext
from appliance.storage.errors import ConflictError
from appliance.tss.aux import AuxParty, generate_aux_keys
from appliance.tss.group import SystemRNG
from appliance.tss.keyshare import PooledAux

log = logging.getLogger("appliance.node")

AUX_BITS = (2048, 3072)


def aux_context(aux_id: str) -> SealContext:
    """The sealing context of a pooled aux-info: a blob unseals only under its own id."""
    return SealContext("aux", key_id=aux_id)


class AuxPool:
    """Keeps the whole committee's aux-info ready (on its lowest-index node) and picks one
    for a keygen this node coordinates."""

    def __init__(self, rt: Runtime, health: PeerHealth, coordinate: Callable, last_sign: Callable[[], float],
                 signing_now: Callable[[], bool], *, aux_store: Late[AuxStore], hsm: Late[Sealer]) -> None:
        self.rt = rt
        self.health = health
        self.coordinate = coordinate  # Coordinator.run
        self.last_sign = last_sign
        self.signing_now = signing_now
        self.aux_store = aux_store
        self.hsm = hsm
        self.wakeup = asyncio.Event()

    @property
    def cap(self) -> int:
        return self.rt.config.keys_per_aux

    def committee(self) -> list[int]:
        return sorted(n.index for n in self.rt.cluster.nodes)

    async def loop(self) -> None:
        await refill_loop(self.rt, "aux-info pool", self.rt.config.aux_pool, self.wakeup, self.last_sign,
                          self.signing_now, self._round)

    async def _round(self, target: int) -> bool:
        """One aux_gen job if the committee has fewer than ``target`` aux-info with room, or
        they can take fewer keys than the low-water mark."""
        rt = self.rt
        committee = self.committee()
        self.report()
        if rt.index != committee[0]:
            return False
        bits = rt.config.paillier_bits
        usable = self.aux_store().usable_aux(committee, bits, self.cap)
        room = self.aux_store().aux_room(committee, bits, self.cap)
        if len(usable) >= target and room >= rt.config.aux_low_water:
            return False
        _, missing = await self.health.split_healthy(committee, max_age=5.0)
        if missing:
            return False
        await self.generate(committee, bits)
        return True

    async def generate(self, parties: list[int], bits: int) -> str:
        """Run one aux_gen job for ``parties``; its aux id (JobFailed if it did not finish)."""
        rt = self.rt
        aux_id = new_id("aux_id")
        spec = {"job_id": new_id("job_id"), "kind": "aux_gen", "aux_id": aux_id, "parties": sorted(parties),
                "paillier_bits": bits, "coordinator": rt.index}
        await self.coordinate(spec)
        rt.metrics.aux_event("generated")
        self.report()
        return aux_id

    def choose(self, parties: list[int], bits: int) -> str | None:
        """The aux-info a keygen of ``parties`` coordinated here takes (fullest first), or None
        (the pool is empty: the keygen runs its own aux session, counted as a fallback)."""
        ids = self.aux_store().usable_aux(sorted(parties), bits, self.cap)
        self.rt.metrics.aux_event("taken" if ids else "fallback")
        if not ids and sorted(parties) == self.committee():
            self.wakeup.set()
        return ids[0] if ids else None

    def report(self) -> None:
        rt = self.rt
        room = self.aux_store().aux_room(self.committee(), rt.config.paillier_bits, self.cap)
        rt.metrics.set_aux_room(room, rt.config.aux_low_water if rt.config.aux_pool else 0)


class AuxGenJob:
    """The ``aux_gen`` job kind: one pooled aux-info for the job's committee."""

    def __init__(self, rt: Runtime, driver: SessionDriver, primes: PrimeSupply, pool: AuxPool, *,
                 aux_store: Late[AuxStore], hsm: Late[Sealer], signer: Late[IdentitySigner]) -> None:
        self.rt = rt
        self.driver = driver
        self.primes = primes
        self.pool = pool
        self.aux_store = aux_store
        self.hsm = hsm
        self.signer = signer
        self._held: dict[str, tuple] = {}  # the coordinator's own aux-info until every party has its own

    async def admit(self, spec: dict, checked: Any) -> None:
        if spec.get("paillier_bits") not in AUX_BITS or not is_id("aux_id", spec.get("aux_id")):
            raise ServiceError("bad_job", "malformed aux_gen job")
        if sorted(spec["parties"]) != list(spec["parties"]) or len(set(spec["parties"])) < 2:
            raise ServiceError("bad_job", "an aux-info committee is a sorted set of at least two nodes")
        if self.aux_store().get_aux(spec["aux_id"]) is not None:
            raise ServiceError("aux_exists", "aux id already used")
        # a coordinator cannot make this node spend primes and CPU on aux-info nobody uses: an
        # honest pool opens one when it has fewer than [aux] pool with room (or is below the
        # low-water mark), so more than max(pool, 1) + 1 with room is refused
        limit = max(self.rt.config.aux_pool, 1) + 1
        unfilled = sum(len(self.aux_store().usable_aux(spec["parties"], bits, self.pool.cap)) for bits in AUX_BITS)
        if unfilled >= limit:
            raise ServiceError("aux_pool_full", f"{self.rt.me.id}: holds {unfilled} aux-info of this committee "
                               f"with room already (at most {limit})")

    def attach(self, job: JobRun) -> None:
        return None

    async def run(self, job: JobRun) -> None:
        rt, spec = self.rt, job.spec
        bits = int(spec["paillier_bits"])
        rng = SystemRNG()
        primes = await self.primes.take(bits)
        keys = await rt.cpu_call(generate_aux_keys, bits, primes, rng)
        sid = phase_sid(job.job_id, "aux")
        party = AuxParty.pooled(sid, rt.index, job.parties, keys, self.signer(), rt.directory, rng)
        pooled: PooledAux = await self.driver.drive(job, sid, party, phase="aux")
        fp = pooled.fingerprint()
        blob = await self.hsm().seal_async(aux_context(spec["aux_id"]), pooled.to_bytes())
        held = (spec["aux_id"], job.parties, bits, fp, blob)
        if job.coordinator == rt.index:
            self._held[job.job_id] = held
        else:
            self.aux_store().add_aux(*held)
        job.result = {"aux_id": spec["aux_id"], "fingerprint": fp.hex()}

    def prepare(self, job: JobRun) -> None:
        return None

    async def finish(self, job: JobRun, others: list[int], cancel: Cancel) -> dict:
        reports = [r.get("result") or {} for r in job.reports.values()]
        if job.result is not None:
            reports.append(job.result)
        fps = {r.get("fingerprint") for r in reports}
        held = self._held.pop(job.job_id, None)
        if len(fps) != 1 or held is None:
            err = ServiceError("inconsistent_result", "the parties ended with different aux-info")
            await cancel(err)
            raise JobFailed(err)
        try:
            self.aux_store().add_aux(*held)
        except ConflictError:
            raise JobFailed(ServiceError("aux_exists", "aux id already used")) from None
        return {"aux_id": held[0], "fingerprint": fps.pop()}

    def own_part_waits_for_opens(self, spec: dict) -> bool:
        return False

    def abandon(self, job: JobRun) -> None:
        self._held.pop(job.job_id, None)
        aux_id = job.spec.get("aux_id")
        if is_id("aux_id", aux_id):
            self.aux_store().delete_aux(aux_id)
