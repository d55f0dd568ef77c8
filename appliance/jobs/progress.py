"""What a key operation coordinated by this node is doing now: its phase and how far it is
(``keygen`` round 2 of 3, ``primes`` 1 of 4, ``aux`` round 1 of 3, ``commit``), and the phases
it has finished with their durations. ``GET /v1/operations/{op_id}`` shows it as ``progress``.

The coordinator's own part reports (the session driver on each round transition, the key-change
job while it takes primes, the coordinator around the commit) through the
:class:`appliance.ports.ProgressSink` it was given; this board keeps the reports of jobs that
carry an ``operation_id`` and that this node coordinates (a participant's part, a presign or a
sign job report nothing here). Held in memory: an operation's progress is only ever shown by the
node that coordinates it, and a job does not outlive its process. Each change wakes the
operation's long-polls, so a waiting client sees it at once.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Mapping

from appliance.ports import Clock

KEEP_FINISHED = 256  # finished operations whose last progress is still shown (oldest dropped)
MAX_COMPLETED = 16  # finished phases kept per operation (a key change has at most 6)


class ProgressBoard:
    """The :class:`appliance.ports.ProgressSink` of a node; ``changed(op_id)`` is called on
    every change (the node passes ``Waiters.notify``)."""

    def __init__(self, me: int, clock: Clock, changed: Callable[[str], None], *,
                 keep_finished: int = KEEP_FINISHED) -> None:
        self.me = me
        self.clock = clock
        self.changed = changed
        self.keep_finished = keep_finished
        self._live: dict[str, dict[str, Any]] = {}
        self._finished: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def report(self, spec: Mapping[str, Any], phase: str, done: int, total: int,
               detail: str | None = None) -> None:
        op_id = spec.get("operation_id")
        if not isinstance(op_id, str) or spec.get("coordinator") != self.me or op_id in self._finished:
            return
        total = max(1, int(total))
        done = max(0, min(int(done), total))
        now = self.clock.now()
        cur = self._live.get(op_id)
        if cur is None:
            cur = self._live[op_id] = {"phase": phase, "done": done, "total": total, "since": now,
                                       "updated": now, "completed": []}
        elif cur["phase"] != phase:
            finished = cur["completed"]
            finished.append({"phase": cur["phase"], "done": cur["done"], "total": cur["total"],
                             "ms": round((now - cur["since"]) * 1000, 1)})
            del finished[:-MAX_COMPLETED]
            cur.update(phase=phase, done=done, total=total, since=now, updated=now)
            cur.pop("detail", None)
        elif (cur["done"], cur["total"], cur.get("detail")) == (done, total, detail):
            return  # nothing new
        else:
            cur.update(done=done, total=total, updated=now)
        if detail is not None:
            cur["detail"] = detail
        else:
            cur.pop("detail", None)
        self.changed(op_id)

    def finish(self, op_id: str) -> None:
        """The operation ended (done or failed): its last progress stays as it was, shown with
        the operation's final status; later reports are ignored."""
        cur = self._live.pop(op_id, None)
        if cur is None:
            return
        self._finished[op_id] = cur
        while len(self._finished) > self.keep_finished:
            self._finished.popitem(last=False)

    def view(self, op_id: str) -> dict[str, Any] | None:
        """``progress`` of the operation's answer, or None if nothing was reported here."""
        cur = self._live.get(op_id) or self._finished.get(op_id)
        if cur is None:
            return None
        out = {"phase": cur["phase"], "done": cur["done"], "total": cur["total"], "updated": cur["updated"],
               "completed": [dict(c) for c in cur["completed"]]}
        if "detail" in cur:
            out["detail"] = cur["detail"]
        return out


def waiting_for_approval(counted: int, more: int, detail: str | None = None) -> dict[str, Any]:
    """``progress`` of an operation that waits for the key-change quorum: approvals counted so
    far of the number the policy needs."""
    out: dict[str, Any] = {"phase": "waiting_for_approval", "done": counted, "total": max(1, counted + more),
                           "completed": []}
    if detail:
        out["detail"] = detail
    return out
