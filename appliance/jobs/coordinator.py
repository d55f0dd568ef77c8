"""The coordinator: sign the job description, open it at every other party, run its own part,
collect every party's report, and finish (the kind's :meth:`finish`) or cancel the job
everywhere with the cause and the culprits where known."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Mapping

from appliance.cluster.health import PeerHealth
from appliance.cluster.quarantine import QuarantineService
from appliance.errors import ServiceError
from appliance.ids import peer_path
from appliance.job_authority import COORDINATOR_SIG, as_wire, job_digest
from appliance.jobs.kinds import JobKind
from appliance.jobs.local import LocalRun
from appliance.jobs.model import JobFailed, JobRun
from appliance.jobs.table import JobTable
from appliance.logs import HTTP_REQUEST_ID, current_request_id, get_logger
from appliance.ports import NO_PROGRESS, Late, PeerLink, ProgressSink, ReplayStore, Sealer
from appliance.recorder import Recorder
from appliance.runtime import Runtime
from appliance.transport import PeerError

log = logging.getLogger("appliance.node")
events = get_logger("appliance.jobs")


class Coordinator:
    def __init__(self, rt: Runtime, table: JobTable, local: LocalRun, kinds: Mapping[str, JobKind],
                 health: PeerHealth, quarantine: QuarantineService, recorder: Recorder, *,
                 hsm: Late[Sealer], replay: Late[ReplayStore], peers: PeerLink,
                 progress: ProgressSink = NO_PROGRESS) -> None:
        self.rt = rt
        self.progress = progress
        self.hsm = hsm
        self.replay = replay
        self.link = peers
        self.table = table
        self.local = local
        self.kinds = kinds
        self.health = health
        self.quarantine = quarantine
        self.recorder = recorder

    async def run(self, spec: dict, *, taken: Any = None, items: Any = None) -> dict:
        """Run a job with the parties of ``spec``; return the finished result or raise JobFailed.
        ``taken``: the coordinator's own presignature, already spent in its store. ``items``:
        for a sign job, what this node decoded itself (the digests it signs and checks)."""
        rt = self.rt
        spec.setdefault("policy_hash", rt.policy.hash)
        http_rid = current_request_id()
        if http_rid is not None:  # the X-Request-Id that caused it, under the signature below
            spec.setdefault(HTTP_REQUEST_ID, http_rid)
        # every party checks this signature first (appliance/job_authority.py)
        sig = await self.hsm().sign_digest_async(job_digest(as_wire(spec)))
        spec[COORDINATOR_SIG] = sig.hex()
        job = JobRun(spec, presig_taken=taken, dec=items)
        kind = spec["kind"]
        with self.recorder.together():  # the job id spent and its start entry: one commit
            if not self.replay().use_job_id(job.job_id):  # a session id is never run twice
                raise JobFailed(ServiceError("job_exists", "job id already used"))
            self.recorder.quiet(rt.me.id, f"{kind}_session_start", key_id=spec.get("key_id"),
                                subject=job.job_id, decision="started", reason=",".join(rt.node_ids(job.parties)))
        self.table.add(job)
        t0 = time.monotonic()
        events.info("job_started", job=job.job_id, kind=kind, key=spec.get("key_id"),
                    parties=rt.node_ids(job.parties))
        outcome = None
        try:
            others = [p for p in job.parties if p != rt.index]
            own = rt.index in job.parties
            after_opens = own and self.kinds[kind].own_part_waits_for_opens(spec)
            if own and not after_opens:
                # start at once: messages to peers that have not opened the job yet wait there
                self.local.start(job)
            opened = await asyncio.gather(*(self._open_at(p, spec) for p in others), return_exceptions=True)
            failures = [(p, r) for p, r in zip(others, opened) if isinstance(r, BaseException)]
            if failures:
                missing = [p for p, r in failures if isinstance(r, PeerError) and r.status is None]
                for p in missing:
                    self.health.mark_unhealthy(p)
                if missing:
                    err = ServiceError("quorum_unreachable", "nodes did not answer the job",
                                       missing_nodes=rt.node_ids(missing))
                else:
                    p, r = failures[0]
                    # a signer's refusal keeps its reason code
                    body_err = r.error if isinstance(r, PeerError) else {}
                    message = f"{rt.peers[p].id} refused the job: {body_err.get('message', str(r))}"
                    err = (r.service_error(message) if isinstance(r, PeerError)
                           else ServiceError("peer_refused", message))
                await self.cancel_everywhere(job, err, others)
                raise JobFailed(err)
            if after_opens:  # every party accepted: now this node's own part (frames that came
                self.local.start(job)  # early wait in the job's inbox)
            result = await self._collect(job, others)
            rt.metrics.jobs.labels(kind, "done").inc()
            return result
        except JobFailed as exc:
            rt.metrics.jobs.labels(kind, "failed").inc()
            self.quarantine.culprits(exc.error, spec)
            outcome = exc.error.code
            raise
        finally:
            self.recorder.quiet(rt.me.id, f"{kind}_session_end", key_id=spec.get("key_id"),
                                subject=job.job_id, decision="failed" if outcome else "done", reason=outcome)
            events.info("job_finished", job=job.job_id, kind=kind, outcome=outcome or "done",
                        duration_ms=round((time.monotonic() - t0) * 1000, 1))
            rt.metrics.job_seconds.labels(kind, str(len(job.parties))).observe(time.monotonic() - t0)
            self.table.forget(job)

    async def _open_at(self, p: int, spec: dict) -> None:
        rt = self.rt
        for attempt in range(2):
            try:
                await self.link.request(rt.peers[p], "POST", peer_path("jobs"), json_body=spec, timeout=10.0)
                return
            except PeerError as exc:
                if exc.status is not None or attempt == 1:
                    raise
                await asyncio.sleep(0.05)

    async def _collect(self, job: JobRun, others: list[int]) -> dict:
        rt = self.rt
        deadline = time.monotonic() + rt.config.job_timeout_s
        while True:
            own_done = job.task is None or job.task.done()
            if own_done and job.task is not None:
                exc = job.task.exception() if not job.task.cancelled() else None
                if job.task.cancelled():
                    why = job.cancelled or {"code": "cancelled", "message": "the job was cancelled"}
                    raise JobFailed(ServiceError.from_error(why))
                if isinstance(exc, JobFailed):
                    await self.cancel_everywhere(job, exc.error, others)
                    raise exc
                if exc is not None:
                    log.error("job %s failed here", job.job_id, exc_info=exc)
                    err = ServiceError("internal", f"{type(exc).__name__}")
                    await self.cancel_everywhere(job, err, others)
                    raise JobFailed(err)
            failed = [r for r in job.reports.values() if not r.get("ok")]
            if failed:
                err = ServiceError.from_error(failed[0].get("error") or {})
                await self.cancel_everywhere(job, err, others)
                raise JobFailed(err)
            if own_done:
                self.progress.report(job.spec, "parties", len(set(job.reports) & set(others)), len(others))
            if own_done and set(job.reports) >= set(others):
                break
            if own_done and job.kind == "sign" and job.result is not None:
                break  # the own, verified signature is the result; late reports are ignored
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                missing = [p for p in others if p not in job.reports]
                err = ServiceError("job_timeout", "the job did not finish in time",
                                   missing_nodes=rt.node_ids(missing))
                if job.task is not None:
                    job.task.cancel()
                await self.cancel_everywhere(job, err, others)
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
                _, down = await self.health.split_healthy(silent) if silent else ([], [])
                job.down_strikes = job.down_strikes + 1 if down else 0
                if job.down_strikes >= 2:
                    err = ServiceError("quorum_unreachable", "a party stopped answering during the job",
                                       missing_nodes=rt.node_ids(down))
                    if job.task is not None and not job.task.done():
                        job.task.cancel()
                    await self.cancel_everywhere(job, err, others)
                    raise JobFailed(err)
        async def cancel(err: ServiceError) -> None:
            await self.cancel_everywhere(job, err, others)

        self.progress.report(job.spec, "commit", 0, 1, "every party holds the same result: committing")
        result = await self.kinds[job.kind].finish(job, others, cancel)
        self.progress.report(job.spec, "commit", 1, 1)
        return result

    async def cancel_everywhere(self, job: JobRun, err: ServiceError, others: list[int]) -> None:
        body = {"from": self.rt.index, **err.to_error()}
        if job.task is not None and not job.task.done():
            job.cancelled = body
            job.task.cancel()
        self.local.abandon(job)
        await self.local.cancel_at(job, body, others)

    def take_report(self, job_id: str, from_index: int, body: dict) -> None:
        """``POST /v1/peer/jobs/{id}/report``: a party's outcome of a job this node coordinates."""
        job = self.table.get(job_id)
        if job is None or job.coordinator != self.rt.index:
            return
        if from_index not in job.parties:
            raise ServiceError("forbidden", "not a party of this job")
        job.reports[from_index] = body
        job.report_event.set()
