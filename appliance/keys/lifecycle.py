"""Key lifecycle jobs (disable, enable, delete) on one party: signed key-change requests under
the policy's key-change quorum, re-checked by every holder (appliance/jobs/authorization.py)
before it changes anything.

- ``disable``: the key's status becomes ``disabled`` here: sign requests and sign jobs of it
  are refused (``key_disabled``), its presignature pool stops (the pool fills active keys only).
- ``enable``: back to ``active``.
- ``delete``: two phases, like a refresh (:mod:`appliance.keys.two_phase`): each holder
  *prepares* (status ``deleting``: refused for signing, an fsynced record of the change), the
  coordinator records its decision and every holder *commits*: its sealed shares of every
  epoch and its presignatures are destroyed (and the presignatures' HSM keys), the key row
  stays as ``deleted`` with its versions' dates for the audit trail. A delete the coordinator
  never committed is abandoned: the key goes back to the status it had.

Every step is an audit entry on every holder. Allowed steps: :data:`TRANSITIONS`."""

from __future__ import annotations

from appliance.errors import ServiceError
from appliance.jobs.authorization import mark_request_used
from appliance.jobs.kinds import Cancel
from appliance.jobs.model import JobRun
from appliance.keys import states
from appliance.keys.two_phase import TwoPhase
from appliance.pools.presign import PresignPool
from appliance.ports import AuditSink, KeyChangeStore, KeyStore, Late, ReplayStore
from appliance.runtime import Runtime
from appliance.state_table import InvalidTransition, make_transition  # noqa: F401 (InvalidTransition: the table's error)

KINDS = ("disable", "enable", "delete")

#: (key status, lifecycle event) -> the status after it; anything else is refused
TRANSITIONS: dict[tuple[str, str], str] = {
    ("active", "disable"): "disabled",
    ("disabled", "enable"): "active",
    ("active", "delete"): "deleting",
    ("disabled", "delete"): "deleting",
    ("deleting", "commit_delete"): "deleted",
    ("deleting", "abandon_delete"): "active",  # or disabled: the status it had (kept with the change)
}
STATES = ("active", "disabled", "deleting", "deleted")
EVENTS = ("disable", "enable", "delete", "commit_delete", "abandon_delete")

transition = make_transition("a key's lifecycle", TRANSITIONS)


def check_allowed(status: str | None, event: str) -> str:
    """The status after ``event``, or the ServiceError a client sees (the exact code)."""
    if status in ("deleting", "deleted"):
        raise ServiceError("key_deleted", f"the key is {status}")
    if status == "active" and event == "enable":
        raise ServiceError("key_not_disabled", "the key is not disabled")
    if status == "disabled" and event == "disable":
        raise ServiceError("key_disabled", "the key is disabled already")
    if status not in STATES:
        raise ServiceError("not_found", "unknown key")
    return transition(status, event)


class LifecycleJob:
    def __init__(self, rt: Runtime, two_phase: TwoPhase, pool: PresignPool, *, key_store: Late[KeyStore],
                 changes: Late[KeyChangeStore], replay: Late[ReplayStore], audit: Late[AuditSink]) -> None:
        self.rt = rt
        self.two_phase = two_phase
        self.pool = pool
        self.key_store = key_store
        self.changes = changes
        self.replay = replay
        self.audit = audit

    def _row(self, spec: dict) -> dict:
        row = self.key_store().get_key(str(spec["key_id"]))
        status = row["status"] if row is not None else None
        check_allowed(status, spec["kind"])
        if sorted(int(p) for p in spec["parties"]) != sorted(row["participants"]):
            raise ServiceError("bad_job", "the job's parties are not the key's holders")
        if int(spec.get("epoch", -1)) != row["epoch"]:
            raise ServiceError("epoch_mismatch", "the key's epoch differs on this node")
        return row

    async def admit(self, spec: dict, checked) -> None:
        self._row(spec)
        if self.two_phase.key_change_running(str(spec["key_id"])):
            raise ServiceError("key_change_in_progress", f"{self.rt.me.id}: another change of this key is under way")

    def attach(self, job: JobRun) -> None:
        return None

    async def run(self, job: JobRun) -> None:
        row = self._row(job.spec)
        mark_request_used(self.replay(), job.spec)  # once per signed request
        job.result = {"key_id": row["key_id"], "previous": row["status"]}

    def prepare(self, job: JobRun) -> None:
        spec, rt = job.spec, self.rt
        key_id, kind = str(spec["key_id"]), spec["kind"]
        row = self.key_store().get_key(key_id)
        new = check_allowed(row["status"] if row else None, kind)
        actor = str(spec.get("actor") or rt.peers[job.coordinator].id)
        if kind == "delete":
            states.transition(states.NONE, "prepare")
            self.changes().prepare(key_id, job.job_id, "delete", "delete", row["epoch"], job.coordinator,
                                   row["participants"], row["threshold"], row["status"])
            self.audit().record(actor, "delete_prepared", key_id=key_id, subject=job.job_id, decision="deleting",
                                reason=f"request {spec.get('request_id')}; signing refused until committed or abandoned")
        else:
            self.key_store().set_key_status(key_id, new)
            self.audit().record(actor, f"key_{kind}d", key_id=key_id, subject=job.job_id, decision=new,
                                reason=f"request {spec.get('request_id')}")
        job.result = {**(job.result or {}), "status": new}
        self.pool.changed()

    async def finish(self, job: JobRun, others: list[int], cancel: Cancel) -> dict:
        spec = job.spec
        key_id = str(spec["key_id"])
        if spec["kind"] != "delete":
            status = "disabled" if spec["kind"] == "disable" else "active"
            return {"key_id": key_id, "status": status, "nodes": self.rt.node_ids(job.parties)}
        commit = await self.two_phase.commit_everywhere(job.job_id, key_id, "delete", int(spec["epoch"]),
                                                        job.parties)
        return {"key_id": key_id, "status": "deleted", "nodes": self.rt.node_ids(job.parties), **commit}

    def own_part_waits_for_opens(self, spec: dict) -> bool:
        return False

    def abandon(self, job: JobRun) -> None:
        """A lifecycle job that will not finish: a prepared delete goes back to the key's
        status; a disable or enable applied here is undone."""
        spec = job.spec
        key_id = str(spec["key_id"])
        if spec["kind"] == "delete":
            p = self.changes().pending_for_job(job.job_id)
            if p is not None and p["state"] == states.PREPARED:
                self.two_phase.abandon_prepared(job.job_id, p["state"])
            return
        res = job.result or {}
        row = self.key_store().get_key(key_id)
        if res.get("status") and row is not None and row["status"] == res["status"]:
            self.key_store().set_key_status(key_id, res["previous"])
            self.audit().record(self.rt.me.id, f"key_{spec['kind']}_undone", key_id=key_id, subject=job.job_id,
                                decision=res["previous"], reason="the job did not finish on every holder")
