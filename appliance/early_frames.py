"""Frames that arrive for a job this node has not opened yet, bounded in bytes per peer.

A peer's first batch of a job can overtake the coordinator's ``POST /v1/peer/jobs``; its
frames wait here until the job starts. The old buffer was bounded only in counts (256 jobs
x 64 batches x 16 MiB bodies): one peer grew a node from 75 to 695 MiB in 3.6 s. Now every
peer has a byte budget (the body sizes it sent, until its frames are taken or expire); a
batch over it is dropped, as are batches beyond the per-job and job-count limits.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

MAX_BYTES_PER_PEER = 48 << 20  # three full-size peer bodies (16 MiB each)
MAX_JOBS = 256
MAX_BATCHES_PER_JOB = 64


@dataclass
class _Job:
    batches: list[tuple[float, int, list, int]] = field(default_factory=list)  # (t, peer, frames, size)


class EarlyFrames:
    """job id -> batches waiting; :meth:`pop` hands them out as ``(t, peer, frames)``."""

    def __init__(self, *, max_bytes_per_peer: int = MAX_BYTES_PER_PEER, max_jobs: int = MAX_JOBS,
                 max_batches_per_job: int = MAX_BATCHES_PER_JOB,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_bytes_per_peer = max_bytes_per_peer
        self.max_jobs = max_jobs
        self.max_batches_per_job = max_batches_per_job
        self.clock = clock
        self._jobs: dict[str, _Job] = {}
        self._bytes: dict[int, int] = {}  # peer index -> bytes held for it

    def bytes_held(self, peer: int) -> int:
        return self._bytes.get(peer, 0)

    def __len__(self) -> int:
        return len(self._jobs)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._jobs

    def add(self, job_id: str, peer: int, frames: list, size: int) -> bool:
        """Keep a batch of ``size`` bytes (its body) from ``peer``; False if it is dropped."""
        job = self._jobs.get(job_id)
        if job is None and len(self._jobs) >= self.max_jobs:
            return False
        if job is not None and len(job.batches) >= self.max_batches_per_job:
            return False
        if self._bytes.get(peer, 0) + size > self.max_bytes_per_peer:
            return False
        if job is None:
            job = self._jobs[job_id] = _Job()
        job.batches.append((self.clock(), peer, frames, size))
        self._bytes[peer] = self._bytes.get(peer, 0) + size
        return True

    def pop(self, job_id: str, default: Any = ()) -> Any:
        """The job's batches as ``(t, peer, frames)``, released from the budgets."""
        job = self._jobs.pop(job_id, None)
        if job is None:
            return default
        for _, peer, _, size in job.batches:
            self._release(peer, size)
        return [(t, peer, frames) for t, peer, frames, _ in job.batches]

    def expire(self, max_age: float) -> None:
        """Drop the jobs whose first batch is older than ``max_age`` seconds."""
        now = self.clock()
        for job_id, job in list(self._jobs.items()):
            if job.batches and now - job.batches[0][0] > max_age:
                self.pop(job_id)

    def _release(self, peer: int, size: int) -> None:
        left = self._bytes.get(peer, 0) - size
        if left > 0:
            self._bytes[peer] = left
        else:
            self._bytes.pop(peer, None)
