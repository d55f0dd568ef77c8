"""Filling the FROST nonce pool (:mod:`appliance.pools.frost_nonces`) and the ``frost_nonces``
job that publishes a batch of pooled commitments to the one coordinator they are for.

Each node, for every active FROST key it holds and every holder h of the key (itself
included), keeps ``[frost] pool`` nonce pairs whose commitments went to h, made while signing
is quiet. For h = this node they are simply stored; for another holder a ``frost_nonces``
job (parties: this node and h; authorized by this node's signature over the job, as a presign
job: a commitment signs nothing) carries the identity-signed commitments, which h stores only
once each signature checks. A batch h did not take is discarded here (spent unused, its HSM
keys destroyed).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from appliance.cluster.health import PeerHealth
from appliance.errors import ServiceError
from appliance.ids import new_id
from appliance.jobs.kinds import Cancel
from appliance.jobs.model import JobFailed, JobRun, is_frost
from appliance.keys.shares import ShareVault
from appliance.pools.frost_nonces import MAX_PUBLISH, FrostNoncePool
from appliance.pools.presign import PresignPool
from appliance.pools.refill import refill_loop
from appliance.ports import KeyStore, Late
from appliance.runtime import Runtime
from appliance.tss.frost.pooled import PooledCommitment

log = logging.getLogger("appliance.node")

#: pairs made per batch (one job), so that signing never waits long behind a refill
BATCH = 8


class FrostNonceJob:
    """The ``frost_nonces`` job kind: the receiving holder checks and stores the batch."""

    def __init__(self, rt: Runtime, shares: ShareVault, pool: FrostNoncePool) -> None:
        self.rt = rt
        self.shares = shares
        self.pool = pool

    async def admit(self, spec: dict, checked: Any) -> None:
        row = self.shares.check_holder_job(spec)
        if not is_frost(row):
            raise ServiceError("bad_job", "pooled nonces are for FROST keys")
        coordinator = int(spec["coordinator"])
        if sorted(int(p) for p in spec["parties"]) != sorted({coordinator, self.rt.index}):
            raise ServiceError("bad_job", "a batch of pooled commitments goes to one holder")
        raw = spec.get("commitments")
        if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_PUBLISH:
            raise ServiceError("bad_job", f"1 to {MAX_PUBLISH} pooled commitments expected")
        try:
            commitments = [PooledCommitment.from_json(c) for c in raw]
        except (KeyError, TypeError, ValueError):
            raise ServiceError("bad_job", "malformed pooled commitment") from None
        share = await self.shares.load(row)
        self.pool.accept(share, row["key_id"], row["epoch"], coordinator, commitments)

    def attach(self, job: JobRun) -> None:
        return None

    async def run(self, job: JobRun) -> None:
        job.result = {"accepted": len(job.spec.get("commitments") or [])}

    def prepare(self, job: JobRun) -> None:
        return None

    async def finish(self, job: JobRun, others: list[int], cancel: Cancel) -> dict:
        return {"published": len(job.spec.get("commitments") or [])}

    def own_part_waits_for_opens(self, spec: dict) -> bool:
        return False

    def abandon(self, job: JobRun) -> None:
        return None


class FrostNonceFiller:
    """The background refill of this node's pairs, per key and coordinator."""

    def __init__(self, rt: Runtime, health: PeerHealth, shares: ShareVault, pool: FrostNoncePool,
                 presigs: PresignPool, coordinate: Callable, signing_now: Callable[[], bool],
                 key_change_running: Callable[[str], bool], *, key_store: Late[KeyStore]) -> None:
        self.rt = rt
        self.health = health
        self.shares = shares
        self.pool = pool
        self.presigs = presigs  # its quiet clock, and destroy_keys (nonce keys too)
        self.coordinate = coordinate
        self.signing_now = signing_now
        self.key_change_running = key_change_running
        self.key_store = key_store
        self.wakeup = asyncio.Event()

    async def loop(self) -> None:
        await refill_loop(self.rt, "frost nonce pool", self.rt.config.frost_nonce_pool, self.wakeup,
                          lambda: self.presigs.last_sign, self.signing_now, self._round)

    async def _round(self, target: int) -> bool:
        """One batch for the first (key, holder) short of ``target``; True if one was made."""
        rt = self.rt
        for row in self.key_store().list_keys("active"):
            if rt.index not in row["participants"] or not is_frost(row) or self.key_change_running(row["key_id"]):
                continue
            for holder in sorted(row["participants"]):
                have = self.pool.nonces().count_frost_nonces(row["key_id"], row["epoch"], holder=holder)
                if have >= target:
                    continue
                if holder != rt.index:
                    _, missing = await self.health.split_healthy([holder], max_age=5.0)
                    if missing:
                        continue
                await self._batch(row, holder, min(BATCH, target - have))
                return True
        return False

    async def _batch(self, row: dict, holder: int, n: int) -> None:
        rt = self.rt
        share = await self.shares.load(row)
        made = await self.pool.make(share, row["key_id"], row["epoch"], n, holder=holder)
        if holder == rt.index:
            return
        spec = {"job_id": new_id("job_id"), "kind": "frost_nonces", "key_id": row["key_id"],
                "parties": sorted([rt.index, holder]), "epoch": row["epoch"], "coordinator": rt.index,
                "scheme": row["scheme"], "commitments": [c.to_json() for c in made]}
        try:
            await self.coordinate(spec)
        except JobFailed as exc:  # not taken: never offered to anyone, so spent unused
            log.info("frost nonces for %s not published: %s", rt.peers[holder].id, exc.error.message)
            await self.presigs.destroy_keys(self.pool.discard(made))
            await asyncio.sleep(1.0)


__all__ = ["BATCH", "FrostNonceFiller", "FrostNonceJob"]
