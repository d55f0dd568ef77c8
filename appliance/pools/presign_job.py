"""A presign job: the parties make one presignature together; each seals its part under its
own HSM key. The leader (coordinator) stores its own part only once every party has its own."""

from __future__ import annotations

from functools import partial
from typing import Any

from appliance.jobs.driver import SessionDriver
from appliance.jobs.kinds import Cancel
from appliance.jobs.model import JobRun, phase_sid
from appliance.keys.shares import ShareVault
from appliance.pools.presign import PresignPool
from appliance.ports import IdentitySigner, Late, PresignatureStore, Sealer
from appliance.runtime import Runtime
from appliance.sealed import SealContext, presig_key_label
from appliance.tss.group import SystemRNG
from appliance.tss.presign import PresignParty


class PresignJob:
    def __init__(self, rt: Runtime, driver: SessionDriver, shares: ShareVault, pool: PresignPool, *,
                 presigs: Late[PresignatureStore], hsm: Late[Sealer], signer: Late[IdentitySigner]) -> None:
        self.rt = rt
        self.presigs = presigs
        self.hsm = hsm
        self.signer = signer
        self.driver = driver
        self.shares = shares
        self.pool = pool

    async def admit(self, spec: dict, checked: Any) -> None:
        self.shares.check_holder_job(spec)

    def attach(self, job: JobRun) -> None:
        return None

    async def run(self, job: JobRun) -> None:
        rt, spec = self.rt, job.spec
        row = self.shares.active_key(spec["key_id"])
        share = await self.shares.load(row)
        sid = phase_sid(job.job_id, "presign")
        # a refill: its steps and its checks of the peers' proofs on the lower-priority lane
        party = await rt.cpu_call(partial(PresignParty, checks=rt.background_checks), sid, share, job.parties,
                                  self.signer(), rt.directory, SystemRNG(), background=True)
        presig = await self.driver.drive(job, sid, party)
        ctx = SealContext.presignature(spec["key_id"], row["epoch"], presig.presig_id,
                                       presig.R.to_bytes(), presig.signers)
        blob = await self.hsm().seal_presignature_async(ctx, presig.to_bytes())
        held = (presig.presig_id, spec["key_id"], row["epoch"], presig.signers, presig.R.to_bytes(), blob)
        if job.coordinator == rt.index:
            job.presig_held = held
        else:
            self.presigs().add_presignature(*held)
            self.pool.report()
        job.result = {"presig_id": presig.presig_id.hex()}

    def prepare(self, job: JobRun) -> None:
        return None

    async def finish(self, job: JobRun, others: list[int], cancel: Cancel) -> dict:
        own = job.result
        if job.presig_held is not None:  # the leader's own part: usable only now that all have theirs
            self.presigs().add_presignature(*job.presig_held)
            job.presig_held = None
        self.pool.report()
        return {"presig_id": own["presig_id"] if own else None}

    def own_part_waits_for_opens(self, spec: dict) -> bool:
        return False

    def abandon(self, job: JobRun) -> None:
        if not isinstance(job.result, dict):
            return
        pid = bytes.fromhex(job.result["presig_id"])
        if job.presig_held is None:
            taken = self.presigs().take_presignature(pid, reserved=False)
            if taken is None:
                return
        job.presig_held = None
        self.rt.spawn(self.pool.destroy_keys([presig_key_label(pid)]))
