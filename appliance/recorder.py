"""Writing the node's audit log: no entry, no action.

:meth:`Recorder.write` records one decision or refuses the action (``audit_unavailable``);
:meth:`Recorder.quiet` records what already happened (best effort); :meth:`Recorder.refuse`
records a refusal and hands back the error to raise; :meth:`Recorder.together` makes a state
change and its entry one transaction (the audit log lives in the node's database).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from appliance.audit import AuditFieldError, AuditUnavailable
from appliance.errors import PolicyDenied, ServiceError
from appliance.logs import current_request_id, get_logger
from appliance.ports import AuditSink, Late, Transactions
from appliance.runtime import Runtime

log = logging.getLogger("appliance.node")
events = get_logger("appliance.policy")
_POLICY_DECISIONS = ("allowed", "pending", "denied")
_CODE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class Recorder:
    def __init__(self, rt: Runtime, audit: Late[AuditSink], transactions: Late[Transactions]) -> None:
        self.rt = rt
        self.audit = audit
        self.transactions = transactions  # the node's database: the audit log is in it
        self._inside = threading.local()  # together() blocks open on this thread

    @contextmanager
    def together(self) -> Iterator[None]:
        """One transaction of the node's database for a state change and its audit entry::

            with recorder.together():
                store.update_...(...)
                recorder.write(...)

        If the entry cannot be written, :meth:`write` raises ``audit_unavailable`` and the
        state change is rolled back with it (no entry, no action, atomically). Synchronous
        only (never an ``await`` inside: the transaction holds the database's lock). A
        refusal is raised after the block (:meth:`refuse` refuses to run inside one: the
        error would roll its entry back)."""
        if self.audit.value is None:
            raise ServiceError("audit_unavailable", "the audit log is not open")
        depth = getattr(self._inside, "depth", 0)
        self._inside.depth = depth + 1
        try:
            with self.transactions().transaction():
                yield
        finally:
            self._inside.depth = depth

    def write(self, actor: str | None, action: str, *, key_id: str | None = None,
              subject: str | None = None, digest: Any = None, decision: str | None = None,
              reason: str | None = None) -> None:
        """Write one audit entry or refuse the action (503 ``audit_unavailable``)."""
        audit = self.audit.value
        if audit is None:
            raise ServiceError("audit_unavailable", "the audit log is not open")
        rid = current_request_id()  # the X-Request-Id that caused it (appliance/logs.py)
        t0 = time.perf_counter()
        try:
            audit.append(actor, action, key=key_id, subject=subject, digest=digest,
                         decision=decision, reason=reason, request_id=rid)
        except AuditFieldError:
            # never a secret in the log: keep the entry, without the refused text
            try:
                audit.append(actor, action, key=key_id, subject=subject, digest=digest,
                             decision=decision, reason="redacted", request_id=rid)
            except AuditUnavailable:
                self.down()
                raise ServiceError("audit_unavailable",
                                   "the audit log cannot record; the action is refused") from None
        except AuditUnavailable:
            self.down()
            raise ServiceError("audit_unavailable",
                               "the audit log cannot record; the action is refused") from None
        self.rt.metrics.observe_stage("audit_append", time.perf_counter() - t0)
        self.rt.audit_ok = True
        if decision in _POLICY_DECISIONS:  # one event per policy decision, with its code
            events.info("policy_decision", action=action, decision=decision, user=actor, key=key_id,
                        subject=subject, code=reason if isinstance(reason, str) and _CODE.match(reason) else None)

    def down(self) -> None:
        self.rt.audit_ok = False
        self.rt.metrics.audit_failed()

    def quiet(self, actor: str | None, action: str, **kw: Any) -> bool:
        """Best effort (for what already happened and cannot be refused any more)."""
        try:
            self.write(actor, action, **kw)
            return True
        except Exception as exc:  # noqa: BLE001 - logged; metrics count the failure
            log.warning("audit entry %s not written: %s", action, getattr(exc, "code", exc))
            return False

    def refuse(self, error: ServiceError, *, actor: str | None, action: str,
               key_id: str | None = None, subject: str | None = None, digest: Any = None,
               policy: bool = True, note: str = "") -> ServiceError:
        """Audit a refusal (fail closed: if even that cannot be written, 503) and return
        ``error`` to raise. ``policy``: count it in appliance_policy_denials_total. ``note``:
        said after the code in the entry's reason (e.g. the passkey of a refused approval).
        Not inside :meth:`together`: the raised error would roll the refusal's entry back."""
        if getattr(self._inside, "depth", 0):
            raise RuntimeError("Recorder.refuse inside together(): leave the block, then refuse")
        self.write(actor, action, key_id=key_id, subject=subject, digest=digest,
                   decision="denied", reason=f"{error.code} ({note})" if note else error.code)
        if policy:
            self.rt.metrics.policy_denied(error.code)
        return error

    def require_admin(self, user, action: str) -> None:
        """An administrative act of one person (e.g. clearing a quarantine): the user must
        hold one of the policy's key-change roles."""
        policy = self.rt.policy
        roles = policy.key_changes.roles
        u = policy.user(getattr(user, "id", None))
        if u is None or not any(u.has(r) for r in roles):
            raise self.refuse(PolicyDenied("missing_role", f"{action} needs one of the roles "
                              f"{', '.join(roles)}"), actor=getattr(user, "id", None), action=action)
