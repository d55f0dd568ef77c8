"""The jobs running on this node, the ids of those that finished, and the frames of jobs not
opened here yet."""

from __future__ import annotations

import time

from appliance.early_frames import EarlyFrames
from appliance.jobs.model import KEY_CHANGES, JobRun


class JobTable:
    def __init__(self) -> None:
        self.running: dict[str, JobRun] = {}
        self.finished: dict[str, float] = {}
        self.early = EarlyFrames()  # frames of jobs not opened yet, bounded in bytes per peer

    def get(self, job_id: str) -> JobRun | None:
        return self.running.get(job_id)

    def add(self, job: JobRun) -> None:
        self.running[job.job_id] = job

    def forget(self, job: JobRun) -> None:
        self.running.pop(job.job_id, None)
        self.finished[job.job_id] = time.monotonic()

    def seen(self, job_id: str) -> bool:
        return job_id in self.running or job_id in self.finished

    def any_of_kind(self, kind: str) -> bool:
        return any(j.kind == kind for j in self.running.values())

    def key_change_running(self, key_id: str) -> bool:
        return any(j.kind in KEY_CHANGES and j.spec.get("key_id") == key_id for j in self.running.values())

    def expire(self) -> None:
        now = time.monotonic()
        self.early.expire(60.0)
        for jid, t in list(self.finished.items()):
            if now - t > 600:
                self.finished.pop(jid, None)
