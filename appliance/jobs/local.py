"""This node's own part of a job (as a participant, or the coordinator's own part): run the
kind's sessions, map what went wrong to one ServiceError, make the result durable."""

from __future__ import annotations

import asyncio
import logging
from typing import Mapping

from appliance.errors import ServiceError
from appliance.ids import peer_path
from appliance.jobs.frames import FrameExchange
from appliance.jobs.kinds import JobKind
from appliance.jobs.model import JobFailed, JobRun, PeerUnreachable
from appliance.ports import PeerLink
from appliance.runtime import Runtime
from appliance.transport import PeerError
from appliance.tss.protocol import ProtocolAbort
from hsm.errors import HSMError, HSMIntegrityError

log = logging.getLogger("appliance.node")


class LocalRun:
    def __init__(self, rt: Runtime, frames: FrameExchange, kinds: Mapping[str, JobKind], *, peers: PeerLink) -> None:
        self.rt = rt
        self.link = peers
        self.frames = frames
        self.kinds = kinds

    def start(self, job: JobRun) -> None:
        job.task = asyncio.ensure_future(self.run_and_prepare(job))
        self.frames.deliver_early(job)

    async def run_and_prepare(self, job: JobRun) -> None:
        kind = self.kinds[job.kind]
        await self._run(job, kind)
        kind.prepare(job)

    async def _run(self, job: JobRun, kind: JobKind) -> None:
        rt = self.rt
        try:
            await kind.run(job)
        except ProtocolAbort as exc:
            culprits = rt.node_ids(exc.culprits)
            raise JobFailed(ServiceError("protocol_abort", f"{exc.reason}"[:300], culprits=culprits)) from None
        except ServiceError as exc:
            raise JobFailed(exc) from None
        except PeerUnreachable as exc:
            raise JobFailed(ServiceError("quorum_unreachable", "a party could not be reached",
                                         missing_nodes=rt.node_ids([exc.index]))) from None
        except HSMIntegrityError:
            raise JobFailed(ServiceError(
                "sealed_data_corrupt",
                f"{rt.me.id}: sealed data of key {job.spec.get('key_id')} does not unseal (corrupt or "
                "altered); nothing else is affected: other keys, and this key on the other nodes, "
                "still sign")) from None
        except HSMError as exc:
            raise JobFailed(ServiceError("hsm_unavailable",
                                         f"{rt.me.id}: the HSM is not available ({exc})")) from None

    def abandon(self, job: JobRun) -> None:
        try:
            self.kinds[job.kind].abandon(job)
        except Exception:  # pragma: no cover
            log.exception("cleaning up job %s", job.job_id)

    async def peer_post(self, p: int, path, body: dict) -> bool:
        """POST to a peer; False (logged, counted) if it failed."""
        rt = self.rt
        try:
            await self.link.request(rt.peers[p], "POST", path, json_body=body, timeout=5.0)
            return True
        except PeerError as exc:
            rt.metrics.peer_errors.labels(rt.peers[p].id).inc()
            log.info("peer call %s %s failed: %s", rt.peers[p].id, path, exc)
            return False

    async def cancel_at(self, job: JobRun, body: dict, parties: list[int]) -> None:
        await asyncio.gather(*(self.peer_post(p, peer_path("jobs", job.job_id, "cancel"), body)
                               for p in parties), return_exceptions=True)
