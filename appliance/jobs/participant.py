"""The participant: a peer coordinator asks this node to take part in a job. It checks the
job itself (the coordinator's signature, a fresh job id, the policy: the signed request and
its approvals, then the kind's own checks), runs its part and reports to the coordinator."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, Mapping

from appliance.cluster.quarantine import QuarantineService
from appliance.errors import PolicyDenied, ServiceError
from appliance.ids import check_id, peer_path
from appliance.job_authority import JOB_AUTHORITY, coordinator_signature_ok
from appliance.jobs.authorization import JobAuthorizer
from appliance.jobs.kinds import JobKind
from appliance.jobs.local import LocalRun
from appliance.jobs.model import KEY_CHANGES, JobFailed, JobRun
from appliance.jobs.table import JobTable
from appliance.logs import HTTP_REQUEST_ID, REQUEST_ID, get_logger, valid_request_id
from appliance.ports import AuditSink, KeyChangeStore, Late, ReplayStore
from appliance.recorder import Recorder
from appliance.runtime import Runtime

log = logging.getLogger("appliance.node")
events = get_logger("appliance.jobs")


class Participant:
    def __init__(self, rt: Runtime, table: JobTable, local: LocalRun, kinds: Mapping[str, JobKind],
                 authorizer: JobAuthorizer, quarantine: QuarantineService, recorder: Recorder,
                 on_sign: Callable[[], None], *, replay: Late[ReplayStore], changes: Late[KeyChangeStore],
                 audit: Late[AuditSink]) -> None:
        self.rt = rt
        self.replay = replay
        self.changes = changes
        self.audit = audit
        self.table = table
        self.local = local
        self.kinds = kinds
        self.authorizer = authorizer
        self.quarantine = quarantine
        self.recorder = recorder
        self.on_sign = on_sign  # a sign job here: the presignature pool waits until it is quiet

    async def accept(self, spec: dict, from_index: int) -> None:
        """A peer coordinator asks this node to take part (``POST /v1/peer/jobs``)."""
        rt = self.rt
        if not rt.ready:
            raise ServiceError("not_ready", f"{rt.me.id} is not ready: {rt.fault or 'starting'}")
        try:
            job_id = check_id("job_id", spec["job_id"])
            if spec["kind"] == "aux_gen":  # no key: the aux-info it makes has an id of its own
                check_id("aux_id", spec["aux_id"])
            else:
                check_id("key_id", spec["key_id"])
            if spec.get("aux_id") is not None:
                check_id("aux_id", spec["aux_id"])
            if spec.get("request_id") is not None:
                check_id("request_id", spec["request_id"])
            http_rid = spec.get(HTTP_REQUEST_ID)
            if http_rid is not None and not valid_request_id(http_rid):
                raise ValueError("bad http_request_id")
            kind = spec["kind"]
            parties = [int(p) for p in spec["parties"]]
            coordinator = int(spec["coordinator"])
        except (KeyError, TypeError, ValueError):  # BadId is a ValueError
            raise ServiceError("bad_job", "malformed job description") from None
        if coordinator != from_index:
            raise ServiceError("forbidden", "a job must come from its coordinator")
        if kind not in JOB_AUTHORITY or rt.index not in parties or not set(parties) <= set(rt.peers):
            raise ServiceError("bad_job", "unknown kind or parties")
        # the rule (appliance/job_authority.py): no job without an authorizing statement that
        # this node checks itself -- first the coordinator's HSM identity signature over the
        # whole job, then (JobAuthorizer) the user's signed request and its approvals
        if not coordinator_signature_ok(spec, from_index, rt.directory):
            raise self.recorder.refuse(PolicyDenied("bad_coordinator_signature", "the job is not signed by its "
                                       "coordinator's identity key"), actor=rt.peers[from_index].id,
                                       action=f"{kind}_job_refused", key_id=spec.get("key_id"), subject=job_id)
        if self.table.seen(job_id):
            running = self.table.get(job_id)
            if running is not None and running.spec == spec:
                return
            raise ServiceError("job_exists", "job id already used")
        if not self.replay().use_job_id(job_id):
            # never a job id (hence a protocol session id) twice: a replayed job is refused
            raise ServiceError("job_exists", "job id already used")
        if http_rid is not None:
            # the coordinator signed it: this job's lines and entries here carry it (the tasks
            # spawned below copy this context)
            REQUEST_ID.set(http_rid)
        # the policy: this node checks the request, approvals and payload itself
        checked = self.authorizer.authorize(spec, from_index)
        handler = self.kinds[kind]
        dec = await handler.admit(spec, checked)
        rid = spec.get("request_id")
        reason = f"request {rid}" if isinstance(rid, str) else None
        if reason and checked is not None and checked.passkeys:  # name the passkeys it checked
            reason = f"{reason}; {checked.passkeys}"
        self.recorder.write(rt.peers[from_index].id, f"join_{kind}", key_id=spec.get("key_id"),
                            subject=job_id, decision="accepted", reason=reason)
        events.info("job_joined", job=job_id, kind=kind, key=spec.get("key_id"),
                    coordinator=rt.peers[from_index].id)
        job = JobRun(spec, dec=dec)
        if kind == "sign":
            self.on_sign()
        handler.attach(job)
        self.table.add(job)
        job.task = asyncio.ensure_future(self._participate(job))
        self.local.frames.deliver_early(job)

    async def _participate(self, job: JobRun) -> None:
        rt = self.rt
        coord = job.coordinator
        try:
            await self.local.run_and_prepare(job)
            report = {"from": rt.index, "ok": True, "result": job.result, "dropped": job.dropped}
        except asyncio.CancelledError:
            self.local.abandon(job)
            self.table.forget(job)
            return
        except JobFailed as exc:
            self.quarantine.culprits(exc.error, job.spec)
            report = {"from": rt.index, "ok": False, "dropped": job.dropped, "error": exc.error.to_error()}
            self.local.abandon(job)
            # tell the other parties at once so that they stop waiting
            others = [p for p in job.parties if p not in (rt.index, coord)]
            rt.spawn(self.local.cancel_at(job, {"from": rt.index, **report["error"]}, others))
        except Exception as exc:
            log.exception("job %s crashed", job.job_id)
            report = {"from": rt.index, "ok": False,
                      "error": {"code": "internal", "message": type(exc).__name__}}
            self.local.abandon(job)
        self.recorder.quiet(rt.peers[coord].id, f"{job.kind}_session_end", key_id=job.spec.get("key_id"),
                            subject=job.job_id, decision="done" if report.get("ok") else "failed",
                            reason=None if report.get("ok") else report["error"].get("code"))
        if job.kind in KEY_CHANGES and report.get("ok"):
            # keep the job until the coordinator commits or cancels
            rt.spawn(self._expire_pending(job))
        else:
            self.table.forget(job)
        await self.local.peer_post(coord, peer_path("jobs", job.job_id, "report"), report)

    async def _expire_pending(self, job: JobRun) -> None:
        await asyncio.sleep(self.rt.config.job_timeout_s)
        if self.table.get(job.job_id) is not None:
            # no commit or cancel came: the prepared change stays; the lifecycle loop asks the
            # coordinator what it decided (the old epoch stays usable meanwhile)
            self.table.forget(job)

    def cancel(self, job_id: str, from_index: int, body: dict) -> None:
        """``POST /v1/peer/jobs/{id}/cancel`` from the coordinator or another party."""
        rt = self.rt
        job = self.table.get(job_id)
        if job is None:
            self.table.finished[job_id] = time.monotonic()
            self.table.early.pop(job_id, None)
            return
        if from_index not in job.parties and from_index != job.coordinator:
            raise ServiceError("forbidden", "not a party of this job")
        fields = ("code", "message", "culprits", "missing_nodes", "denied", "status")  # status: an older peer's
        job.cancelled = {k: body.get(k) for k in fields if body.get(k) is not None}
        if job.task is not None and not job.task.done():
            job.task.cancel()
        if job.kind in KEY_CHANGES and from_index != job.coordinator \
                and self.changes().pending_for_job(job_id) is not None:
            pass  # prepared: only the coordinator's decision undoes it (asked later if need be)
        else:
            self.local.abandon(job)
        self.audit().record(rt.peers[from_index].id, f"{job.kind}_cancelled", key_id=job.spec.get("key_id"),
                            subject=job_id, decision="cancelled", reason=str(body.get("message", ""))[:200])
        if job.coordinator != rt.index:
            self.table.forget(job)
