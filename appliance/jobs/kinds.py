"""What a kind of job (keygen, refresh, reshare, import, presign, sign) does on this node; the
job machinery (:mod:`appliance.jobs`) calls it and knows nothing else about the kind."""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Protocol

from appliance.errors import ServiceError
from appliance.jobs.model import JobRun

Cancel = Callable[[ServiceError], Awaitable[None]]


class JobKind(Protocol):
    async def admit(self, spec: dict, checked: Any) -> Any:
        """A participant's own checks of a job a peer coordinates (after the policy's, whose
        result is ``checked``); returns what the job keeps (a sign job: the decoded request).
        Raises ServiceError to refuse."""

    def attach(self, job: JobRun) -> None:
        """A participant's job is recorded and about to run (a sign job spends its stored
        presignature here, durably, before anything of it is used)."""

    async def run(self, job: JobRun) -> None:
        """This node's part: drive the job's sessions; sets ``job.result``."""

    def prepare(self, job: JobRun) -> None:
        """After :meth:`run` succeeded: what must be durable before the report leaves."""

    async def finish(self, job: JobRun, others: list[int], cancel: Cancel) -> dict:
        """The coordinator's end of a job every party reported on: its result (``cancel``
        cancels the job at every party, with the error)."""

    def abandon(self, job: JobRun) -> None:
        """Undo what a job that will not finish left in the store."""

    def own_part_waits_for_opens(self, spec: dict) -> bool:
        """True when the coordinator's own part must not start before every other party
        accepted the job (a one-round job whose own part makes something durable, e.g. marks
        the request signed, that a refusal at a peer must not leave behind)."""
