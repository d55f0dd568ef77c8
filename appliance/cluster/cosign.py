"""The node's audit log (hash-chained; no entry, no action) and its checkpoints co-signed by
the peers: this node has each of its checkpoints witnessed, and witnesses theirs (never two
heads for one entry)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from appliance.audit import (AuditError, AuditLog, AuditLogConflict, AuditUnavailable, Checkpoint,
                             adopt_legacy_log)
from appliance.canonical import CanonicalError
from appliance.errors import ServiceError
from appliance.ids import peer_path
from appliance.ports import CheckpointLog, IdentitySigner, Late, Opened, PeerLink
from appliance.recorder import Recorder
from appliance.runtime import Runtime
from appliance.storage import NodeStore

log = logging.getLogger("appliance.node")


def refuse_audit_writes(db) -> None:
    """Test-only fault (a FaultPlan): the audit tables refuse writes, as a read-only or full
    disk would; the rest of the database stays writable (this connection only, TEMP)."""
    for table in ("audit_entries", "audit_checkpoints", "audit_cosignatures", "audit_witnessed"):
        db.execute(f"CREATE TEMP TRIGGER IF NOT EXISTS fault_{table} BEFORE INSERT ON main.{table} "
                   "BEGIN SELECT RAISE(ABORT, 'test-only fault: the audit store is read-only'); END")


class AuditCosigning:
    def __init__(self, rt: Runtime, recorder: Recorder, *, audit: Opened[AuditLog],
                 signer: Late[IdentitySigner], peers: PeerLink, store: Late[NodeStore]) -> None:
        self.rt = rt
        self.recorder = recorder
        self.opened = audit  # filled by open()
        self.audit: Late[CheckpointLog] = audit
        self.signer = signer
        self.store = store  # its database holds the audit log (opened by open())
        self.link = peers
        self._cosigned_upto = 0

    def open(self) -> str | None:
        """The audit log in the node's database (one connection: a state change and its entry
        commit together), after moving in a log of the old layout (``audit.db``). Returns what
        keeps the node from starting (fail closed: /readyz says it), or None."""
        rt, cfg, signer = self.rt, self.rt.config, self.signer
        db = self.store().database
        try:
            moved = adopt_legacy_log(db, cfg.data_dir / "audit.db", rt.me.id, now=rt.clock.now())
        except AuditLogConflict as exc:
            return f"{exc.code}: {exc}"
        if moved is not None:
            log.warning("audit log moved into %s (%d entries); the old file is %s", cfg.db.name,
                        moved.entries, moved.renamed_to.name)
        audit = AuditLog(db, rt.me.id, signer=lambda digest: signer().sign(digest),
                         checkpoint_every=max(1, cfg.audit_checkpoint_every),
                         on_append=rt.metrics.audit_written)
        if rt.faults.audit_read_only:
            refuse_audit_writes(db)
        self.opened.set(audit)
        return None

    async def loop(self) -> None:
        """Have every checkpoint of this node's audit log co-signed by its peers."""
        while not self.rt.stopping:
            await asyncio.sleep(2.0)
            try:
                await self.pending(timeout=5.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                log.info("audit co-signing: %s", exc)

    async def pending(self, timeout: float) -> None:
        rt, audit = self.rt, self.audit.value
        if audit is None:
            return
        peers = [p for p in rt.peers if p != rt.index]
        cps = audit.checkpoints(self._cosigned_upto)[-20:]
        prefix_done = True
        for cp in cps:
            missing = [p for p in peers if rt.peers[p].id not in cp.cosignatures]
            res = await asyncio.gather(*(self.link.request(rt.peers[p], "POST", peer_path("audit", "checkpoints"),
                                                           json_body=cp.to_json(), timeout=timeout)
                                         for p in missing), return_exceptions=True)
            done = len(peers) - len(missing)
            for p, r in zip(missing, res):
                if isinstance(r, BaseException):
                    continue
                try:
                    audit.add_cosignature(cp.seq, rt.peers[p].id, bytes.fromhex(r["signature"]), rt.node_keys())
                    done += 1
                except (AuditError, KeyError, TypeError, ValueError) as exc:
                    log.warning("co-signature of %s refused: %s", rt.peers[p].id, exc)
            prefix_done = prefix_done and done == len(peers)
            if prefix_done:
                self._cosigned_upto = cp.seq

    async def final(self) -> None:
        """At stop: the final checkpoint, co-signed by the peers that still answer."""
        try:
            if self.signer.value is not None and self.audit().checkpoint() is not None:
                await asyncio.wait_for(self.pending(timeout=2.0), 3.0)
        except Exception as exc:  # noqa: BLE001
            log.info("final audit checkpoint: %s", exc)

    def witness(self, body: Any, from_index: int) -> dict:
        """Peer route: co-sign another node's checkpoint (never two heads for one entry)."""
        rt = self.rt
        try:
            cp = Checkpoint.from_json(body)
        except (AuditError, CanonicalError, TypeError, ValueError):
            raise ServiceError("bad_checkpoint", "malformed checkpoint") from None
        if cp.node != rt.peers[from_index].id:
            raise ServiceError("forbidden", "a node sends only its own checkpoints")
        try:
            sig = self.audit().witness(cp, rt.node_keys())
        except AuditUnavailable:
            self.recorder.down()
            raise ServiceError("audit_unavailable", "cannot keep the checkpoint") from None
        except AuditError as exc:
            self.recorder.quiet(rt.peers[from_index].id, "checkpoint_refused", decision="denied",
                                reason="contradicting_checkpoint")
            raise ServiceError("checkpoint_refused", str(exc)[:200]) from None
        return {"signature": sig.hex()}
