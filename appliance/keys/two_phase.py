"""Key changes end in two phases (the steps: :mod:`appliance.keys.states`): prepare on every
party, the coordinator's recorded decision, commit everywhere, then finalize once every party
confirmed. A party that missed the outcome asks the coordinator (:meth:`TwoPhase.loop`); a
change that does not finish leaves the old epoch in use."""

from __future__ import annotations

import asyncio
import logging
import os
import time

from appliance.errors import ServiceError
from appliance.ids import peer_path
from appliance.jobs.local import LocalRun
from appliance.jobs.model import JobRun
from appliance.jobs.table import JobTable
from appliance.keys import states
from appliance.keys.shares import ShareVault
from appliance.pools.presign import PresignPool
from appliance.ports import AuditSink, KeyChangeStore, KeyStore, Late, PeerLink
from appliance.runtime import Runtime
from appliance.transport import PeerError

log = logging.getLogger("appliance.node")


class TwoPhase:
    def __init__(self, rt: Runtime, table: JobTable, local: LocalRun, shares: ShareVault,
                 pool: PresignPool, *, key_store: Late[KeyStore], changes: Late[KeyChangeStore],
                 audit: Late[AuditSink], peers: PeerLink) -> None:
        self.rt = rt
        self.key_store = key_store
        self.changes = changes
        self.audit = audit
        self.link = peers
        self.table = table
        self.local = local
        self.shares = shares
        self.pool = pool

    def crash(self, point: str) -> None:
        """Test-only fault injection (FaultPlan.crash_points): die here, as a power cut would."""
        if point in self.rt.faults.crash_points:
            log.error("test-only crash point %s reached: exiting", point)
            os._exit(70)

    def key_change_running(self, key_id: str) -> bool:
        rt = self.rt
        if self.table.key_change_running(key_id):
            return True
        p = self.changes().pending(key_id) if self.changes.value is not None else None
        return p is not None and p["state"] == states.PREPARED \
            and time.time() - p["created"] < 2 * rt.config.job_timeout_s

    def holds_epoch(self, key_id: str, epoch: int) -> bool:
        """This node already runs ``epoch`` of the key (or has left its committee)."""
        row = self.key_store().get_key(key_id)
        return row is not None and (row["status"] in ("retired", "deleted") or
                                    (row["status"] == "active" and row["epoch"] >= epoch))

    # -- one party ------------------------------------------------------------------------

    def prepare(self, job: JobRun) -> None:
        """This party's part of a key change is done and sealed: record (fsynced) what it will
        commit, so that a restart or a lost commit message is resolved with the coordinator."""
        spec, res = job.spec, job.result or {}
        kind, key_id = spec["kind"], spec["key_id"]
        p = self.changes().pending_for_job(job.job_id)
        states.transition(p["state"] if p is not None else states.NONE, "prepare")
        if kind in ("keygen", "import"):
            role, epoch, parts, t = "new", int(res.get("epoch", 0)), job.parties, int(spec["threshold"])
        elif kind == "refresh":
            row = self.key_store().get_key(key_id)
            role, epoch, parts, t = "member", int(spec["epoch"]) + 1, row["participants"], row["threshold"]
        else:
            parts, t, epoch = [int(p) for p in spec["new_members"]], int(spec["threshold"]), int(spec["epoch"]) + 1
            if res.get("confirmed"):
                role = "leaver"
            else:
                row = self.key_store().get_key(key_id)
                role = "new" if row is not None and row["status"] == "pending" else "member"
        self.changes().prepare(key_id, job.job_id, kind, role, epoch, job.coordinator, parts, t, res.get("fingerprint"))
        self.crash(f"{kind}:prepared")

    def commit_local(self, job_id: str) -> bool:
        """Put this node's prepared change of ``job_id`` in use (the old share stays until
        finalize). False if nothing was prepared for it."""
        rt = self.rt
        p = self.changes().pending_for_job(job_id)
        if p is None or p["state"] != states.PREPARED:
            return False
        states.transition(p["state"], "commit")
        p = self.changes().commit_prepared(job_id)
        if p is None:
            return False
        key_id = p["key_id"]
        self.shares.forget(key_id)
        if p.get("destroy_labels"):  # a delete: the key's presignatures' HSM keys
            rt.spawn(self.pool.destroy_keys(p["destroy_labels"]))
        self.audit().record(rt.peers[p["coordinator"]].id, f"{p['kind']}_commit", key_id=key_id,
                            subject=job_id, decision="committed", reason=f"epoch {p['new_epoch']}, {p['role']}")
        self.pool.changed()
        return True

    def finalize_local(self, key_id: str, epoch: int, job_id: str) -> None:
        """Every party confirmed ``epoch``: this node's older sealed shares and presignatures go."""
        rt = self.rt
        labels = self.changes().finalize_key(key_id, epoch)
        self.shares.forget(key_id, below_epoch=epoch)
        if labels:
            rt.spawn(self.pool.destroy_keys(labels))
        self.audit().record(rt.me.id, "key_finalized", key_id=key_id, subject=job_id, decision="finalized",
                            reason=f"shares and presignatures of epochs before {epoch} destroyed")
        self.pool.report()

    def abandon_prepared(self, job_id: str, state: str) -> None:
        states.transition(state, "abandon")
        labels = self.changes().abandon_prepared(job_id)
        if labels:
            self.rt.spawn(self.pool.destroy_keys(labels))

    # -- peer routes (from the coordinator) -----------------------------------------------

    def commit_job(self, job_id: str, from_index: int, body: dict | None = None) -> dict:
        """``POST /v1/peer/jobs/{id}/commit`` from the job's coordinator (idempotent: a repeated
        commit of a change already in use is confirmed again)."""
        rt = self.rt
        body = body or {}
        job = self.table.get(job_id)
        p = self.changes().pending_for_job(job_id)
        coord = p["coordinator"] if p is not None else (job.coordinator if job else None)
        if coord is not None and coord != from_index:
            raise ServiceError("forbidden", "only the job's coordinator commits it")
        if p is None:
            try:
                key_id, epoch = str(body["key_id"]), int(body["epoch"])
            except (KeyError, TypeError, ValueError):
                raise ServiceError("not_found", "unknown prepared change") from None
            if self.holds_epoch(key_id, epoch):
                return {"committed": True, "epoch": epoch}
            raise ServiceError("not_prepared", f"{rt.me.id} has nothing prepared for job {job_id}")
        if p["role"] != "delete" and p["fingerprint"] is not None and body.get("fingerprint") != p["fingerprint"]:
            # the coordinator must commit the result every party reported; a party that ended
            # with another key state (a split the sessions did not catch) refuses, nothing changes
            raise ServiceError("result_mismatch", f"{rt.me.id}: the commit of job {job_id} names another key state "
                               "than this node prepared")
        states.transition(p["state"], "commit")
        self.crash("commit")
        if p["state"] == states.PREPARED:
            self.commit_local(job_id)
        if job is not None:
            self.table.forget(job)
        return {"committed": True, "epoch": p["new_epoch"]}

    def finalize_job(self, job_id: str, from_index: int, body: dict) -> dict:
        """``POST /v1/peer/jobs/{id}/finalize``: every party confirmed the new epoch; only the
        coordinator of a change this node committed may say so."""
        try:
            key_id, epoch = str(body["key_id"]), int(body["epoch"])
        except (KeyError, TypeError, ValueError):
            raise ServiceError("bad_body", "need key_id and epoch") from None
        p = self.changes().pending_for_job(job_id)
        if p is None:
            return {"finalized": True}  # done before (or superseded by a later change)
        if p["coordinator"] != from_index or p["key_id"] != key_id or p["new_epoch"] != epoch:
            raise ServiceError("forbidden", "not the coordinator of this change")
        try:
            states.transition(p["state"], "finalize")
        except states.InvalidTransition:
            raise ServiceError("not_committed", "this node has not committed that change") from None
        self.finalize_local(key_id, epoch, job_id)
        return {"finalized": True}

    def decision(self, job_id: str, from_index: int | None = None) -> dict:
        """``GET /v1/peer/jobs/{id}/decision``: what this coordinator decided about a key change."""
        if self.changes().commit_record(job_id) is not None:
            return {"job_id": job_id, "decision": "commit"}
        if self.table.get(job_id) is not None:
            return {"job_id": job_id, "decision": "running"}
        return {"job_id": job_id, "decision": "abort"}  # never recorded a commit: it never will

    # -- the coordinator ------------------------------------------------------------------

    async def commit_everywhere(self, job_id: str, key_id: str, kind: str, new_epoch: int,
                                parties: list[int], *, fingerprint: str | None = None) -> dict:
        """The coordinator's commit: the decision is recorded (fsynced) first, then every party
        is told (with ``fingerprint``, the key state every party reported: each compares it
        with the one it prepared); finalize follows once all confirmed (else the lifecycle
        loop keeps trying)."""
        rt = self.rt
        self.changes().record_commit(job_id, key_id, kind, new_epoch, parties, fingerprint)
        if rt.index in parties and self.commit_local(job_id):
            self.changes().commit_progress(job_id, acked=[rt.index])
        rec = await self._advance(job_id)
        unconfirmed = [p for p in rec["parties"] if p not in rec["acked"]]
        return {"finalized": rec["state"] == "finalized", "unconfirmed_nodes": rt.node_ids(unconfirmed)}

    async def _advance(self, job_id: str) -> dict:
        rt = self.rt
        rec = self.changes().commit_record(job_id)
        if rec is None or rec["state"] == "finalized":
            return rec
        body = {"from": rt.index, "key_id": rec["key_id"], "epoch": rec["new_epoch"],
                "fingerprint": rec.get("fingerprint")}
        todo = [p for p in rec["parties"] if p not in rec["acked"]]
        if rt.index in todo:  # own commit (after a restart, say)
            if self.commit_local(job_id) or self.holds_epoch(rec["key_id"], rec["new_epoch"]):
                rec = self.changes().commit_progress(job_id, acked=[rt.index])
            todo.remove(rt.index)
        oks = await asyncio.gather(*(self.local.peer_post(p, peer_path("jobs", job_id, "commit"), body)
                                     for p in todo))
        rec = self.changes().commit_progress(job_id, acked=[p for p, ok in zip(todo, oks) if ok])
        if not set(rec["acked"]) >= set(rec["parties"]):
            return rec  # someone has not confirmed the new epoch: every old share stays
        todo = [p for p in rec["parties"] if p not in rec["finalized"]]
        done = []
        if rt.index in todo:
            self.finalize_local(rec["key_id"], rec["new_epoch"], job_id)
            done.append(rt.index)
            todo.remove(rt.index)
        oks = await asyncio.gather(*(self.local.peer_post(p, peer_path("jobs", job_id, "finalize"), body)
                                     for p in todo))
        return self.changes().commit_progress(job_id, finalized=done + [p for p, ok in zip(todo, oks) if ok])

    # -- the lifecycle loop ---------------------------------------------------------------

    async def loop(self) -> None:
        """Resolve prepared changes whose commit or cancel never came (ask the coordinator), and
        as a coordinator, bring every committed change to every party and then finalize it."""
        rt = self.rt
        while not rt.stopping:
            await asyncio.sleep(rt.config.lifecycle_interval_s)
            try:
                await self._resolve_prepared()
                for rec in self.changes().open_commits():
                    if self.table.get(rec["job_id"]) is not None:
                        continue
                    row = self.key_store().get_key(rec["key_id"])
                    if row is None or (row["status"] == "active" and row["epoch"] > rec["new_epoch"]):
                        # superseded by a later change (whose finalize covers older epochs)
                        self.changes().commit_progress(rec["job_id"], finalized=rec["parties"])
                        continue
                    await self._advance(rec["job_id"])
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("key lifecycle housekeeping")

    async def _resolve_prepared(self) -> None:
        rt = self.rt
        for p in self.changes().list_pending(states.PREPARED):
            job_id = p["job_id"]
            if self.table.get(job_id) is not None or time.time() - p["created"] < rt.config.lifecycle_interval_s:
                continue
            coord = p["coordinator"]
            if coord == rt.index:
                decision = self.decision(job_id)["decision"]
            else:
                try:
                    body = await self.link.request(rt.peers[coord], "GET",
                                                   peer_path("jobs", job_id, "decision"), timeout=5.0)
                except PeerError:
                    continue  # ask again later; the old epoch stays usable
                decision = body.get("decision") if isinstance(body, dict) else None
            if decision == "commit":
                self.commit_local(job_id)
            elif decision == "abort":
                self.abandon_prepared(job_id, p["state"])
                self.audit().record(rt.peers[coord].id, f"{p['kind']}_abandoned", key_id=p["key_id"],
                                    subject=job_id, decision="abandoned",
                                    reason="the coordinator never committed it; the old epoch stays")
                self.pool.wakeup.set()
