"""Nodes named by an identifiable abort are left out of quorums until an admin clears them
(the list itself: :class:`appliance.quarantine.Quarantine`; this service audits changes)."""

from __future__ import annotations

import logging

from appliance.errors import ServiceError
from appliance.ports import AuditSink, Late
from appliance.quarantine import Quarantine
from appliance.recorder import Recorder
from appliance.runtime import Runtime

log = logging.getLogger("appliance.node")


class QuarantineService:
    def __init__(self, rt: Runtime, recorder: Recorder, audit: Late[AuditSink]) -> None:
        self.rt = rt
        self.audit = audit
        self.recorder = recorder
        cfg = rt.config
        self.list = Quarantine(cfg.db.with_name(cfg.db.name + ".quarantine.json"),
                               [n.id for n in rt.cluster.nodes], rt.metrics.registry)

    def not_quarantined(self, indices) -> list[int]:
        return [i for i in indices if self.rt.peers[i].id not in self.list]

    def named(self, indices) -> list[str]:
        """The node ids among ``indices`` that are quarantined."""
        return [self.rt.peers[i].id for i in indices if self.rt.peers[i].id in self.list]

    def culprits(self, err: ServiceError, spec: dict) -> None:
        """A node named by an identifiable abort is left out of quorums until an admin clears it."""
        rt = self.rt
        if err.code != "protocol_abort" or not err.culprits:
            return
        for node_id in err.culprits:
            if node_id == rt.me.id or node_id not in {n.id for n in rt.cluster.nodes}:
                continue
            if self.list.add(node_id, err.message, spec.get("job_id")):
                log.warning("node %s quarantined: %s", node_id, err.message)
                try:
                    self.audit().record(rt.me.id, "node_quarantined", key_id=spec.get("key_id"),
                                        subject=node_id, decision="quarantined",
                                        reason=f"job {spec.get('job_id')}: {err.message}"[:300])
                except Exception:  # the quarantine holds even if the audit write fails
                    log.exception("audit of quarantine failed")

    def view(self) -> dict:
        return {"nodes": self.list.view()}

    def clear(self, user, node_id: str) -> dict:
        self.recorder.require_admin(user, "clear_quarantine")
        entry = self.list.clear(node_id)
        if entry is None:
            raise ServiceError("not_found", "unknown quarantined node")
        self.audit().record(user.id, "quarantine_cleared", subject=node_id, decision="cleared",
                            reason=str(entry.get("reason", ""))[:300])
        return {"node_id": node_id, "cleared": True, **entry}
