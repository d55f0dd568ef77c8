"""The session driver: one protocol state machine run to its result. Messages it emits go
straight to their recipients; messages for it arrive on the job's queue. Every round has a
deadline (``round_timeout_s``); a round that does not complete names the parties whose
messages are missing. CPU-heavy steps run in the worker threads. Each round finished is
reported to the :class:`appliance.ports.ProgressSink` passed in (``aux`` round 1 of 3)."""

from __future__ import annotations

import asyncio
import logging
import time

from appliance.errors import ServiceError
from appliance.jobs.frames import FrameExchange
from appliance.jobs.model import JobFailed, JobRun
from appliance.logs import get_logger
from appliance.ports import NO_PROGRESS, ProgressSink
from appliance.runtime import Runtime, lane
from appliance.tss.protocol import MessageRejected, ProtocolAbort

log = logging.getLogger("appliance.node")
events = get_logger("appliance.jobs")


class SessionDriver:
    def __init__(self, rt: Runtime, frames: FrameExchange, progress: ProgressSink = NO_PROGRESS) -> None:
        self.rt = rt
        self.frames = frames
        self.progress = progress

    async def drive(self, job: JobRun, sid: bytes, party, *, first_deadline: float | None = None,
                    phase: str | None = None):
        """Run one state machine to its result (session and round durations in the metrics).
        ``phase``: the name its rounds are reported under (the protocol's by default)."""
        t0 = time.perf_counter()
        outcome = "failed"
        try:
            out = await self._session(job, sid, party, first_deadline=first_deadline,
                                      phase=phase or party.PROTOCOL)
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
            elapsed = time.perf_counter() - t0
            self.rt.metrics.observe_session(party.PROTOCOL, outcome, elapsed)
            events.info("protocol_session", job=job.job_id, kind=job.kind, protocol=party.PROTOCOL,
                        outcome=outcome, duration_ms=round(elapsed * 1000, 1))

    async def _session(self, job: JobRun, sid: bytes, party, *, first_deadline: float | None, phase: str):
        rt = self.rt
        q = job.queues[sid]
        on = lane(job.kind, party.PROTOCOL)  # which worker threads (and OS priority)
        rounds = party.last_round
        self.progress.report(job.spec, phase, 0, rounds)
        out = await rt.cpu_call(party.start, **on)
        await self.frames.send(job, party, out)
        rt_s = rt.config.round_timeout_s
        cur = party.round
        round_t0 = time.perf_counter()
        deadline = first_deadline if first_deadline is not None else time.monotonic() + rt_s
        deadline = max(deadline, time.monotonic() + rt_s)
        while not party.done:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                got = job.received.get((sid, party.round), set())
                missing = [p for p in party.others if p not in got]
                raise JobFailed(ServiceError("round_timeout",
                                             f"{party.PROTOCOL} round {party.round} timed out",
                                             missing_nodes=rt.node_ids(missing)))
            try:
                msg = await asyncio.wait_for(q.get(), remaining)
            except asyncio.TimeoutError:
                continue
            try:
                out = await rt.cpu_call(party.receive, msg, **on)
            except MessageRejected as exc:
                job.dropped += 1
                rt.metrics.dropped.labels("rejected").inc()
                log.info("job %s: dropped a message claiming to be from %s: %s", job.job_id,
                         msg.sender, exc)
                continue
            job.received.setdefault((sid, msg.round), set()).add(msg.sender)
            if party.round != cur or party.done:
                now = time.perf_counter()
                rt.metrics.observe_round(party.PROTOCOL, cur, now - round_t0)
                events.info("protocol_round", job=job.job_id, kind=job.kind, protocol=party.PROTOCOL, round=cur,
                            duration_ms=round((now - round_t0) * 1000, 1))
                round_t0 = now
                cur = party.round
                deadline = time.monotonic() + rt_s
                self.progress.report(job.spec, phase, rounds if party.done else cur - 1, rounds)
            if out:
                await self.frames.send(job, party, out)
        return party.result
