"""Quarantine: nodes proven to have misbehaved (named by an identifiable abort) are left out
of quorums until an admin clears them.

Each node keeps its own list of what *it* saw proven (a culprit of a ``ProtocolAbort`` in a
job it coordinated or took part in), in ``<db>.quarantine.json`` beside its database, so a
restart does not forget it. While a node is on the list, this node does not pick it as a
signer, refuses a request that names it (409 ``node_quarantined``) and skips presignature
pools that include it. ``appliance_node_quarantined{node="..."}`` is 1 for it; putting it
on the list and clearing it are audited by the caller (``Node``).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path


class Quarantine:
    def __init__(self, path: Path, node_ids: list[str], registry=None) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._entries: dict[str, dict] = {}
        try:
            data = json.loads(self.path.read_text())
            if isinstance(data, dict):
                self._entries = {str(k): dict(v) for k, v in data.items() if isinstance(v, dict)}
        except (OSError, ValueError):
            pass
        self._gauge = None
        if registry is not None:
            from prometheus_client import Gauge

            self._gauge = Gauge("appliance_node_quarantined",
                                "1 while a node is quarantined here (named by an identifiable abort)",
                                ["node"], registry=registry)
            for nid in node_ids:
                self._gauge.labels(nid).set(1 if nid in self._entries else 0)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._entries

    def nodes(self) -> set[str]:
        return set(self._entries)

    def add(self, node_id: str, reason: str, job_id: str | None = None) -> bool:
        """Quarantine ``node_id``; True if it was not quarantined before."""
        with self._lock:
            if node_id in self._entries:
                return False
            self._entries[node_id] = {"since": time.time(), "reason": reason[:300], "job_id": job_id}
            self._save()
        if self._gauge is not None:
            self._gauge.labels(node_id).set(1)
        return True

    def clear(self, node_id: str) -> dict | None:
        """Take ``node_id`` off the list; its entry, or None if it was not on it."""
        with self._lock:
            entry = self._entries.pop(node_id, None)
            if entry is not None:
                self._save()
        if entry is not None and self._gauge is not None:
            self._gauge.labels(node_id).set(0)
        return entry

    def view(self) -> list[dict]:
        return [{"node_id": k, **v} for k, v in sorted(self._entries.items())]

    def _save(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self._entries, sort_keys=True))
        os.replace(tmp, self.path)
