"""Fault injection for tests, passed in as an object: production builds :data:`NO_FAULTS`.

A node is built with a :class:`FaultPlan` (``Node(config, faults=...)``). The production entry
point (``appliance serve``) always passes :data:`NO_FAULTS`; no configuration file can turn a
fault on (a node.toml with fault keys is refused). Process-level fault tests start nodes
through the test-only entry point ``python -m appliance.testing serve --faults FILE``
(:class:`appliance.testing.LocalCluster` does it for a node given ``faults=``).

What a plan can do:

* ``tamper``: what this node does to its own outgoing protocol frames (``alter``, ``replay``:
  dropped by the recipients without blame; ``bad_partial``: a wrong partial signature that the
  identification names);
* ``crash_points``: the process dies at these points, as a power cut would (``commit``,
  ``refresh:prepared``, ...);
* ``delay_s`` / ``delay_protocols``: its protocol messages go out late (a slow peer);
* ``coordinator_faults``: as a coordinator it sends what a malicious one would, chosen by a
  request's nonce prefix (see ``appliance.signing.requests.SignRequests._fault``);
* ``audit_read_only``: its audit store refuses writes (it must then refuse to sign).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping


@dataclass(frozen=True)
class FaultPlan:
    tamper: frozenset[str] = field(default_factory=frozenset)
    crash_points: frozenset[str] = field(default_factory=frozenset)
    delay_s: float = 0.0
    delay_protocols: frozenset[str] | None = None  # None: every protocol
    coordinator_faults: bool = False
    audit_read_only: bool = False

    def delay_for(self, protocol: str) -> float:
        """How late this node sends its messages of ``protocol``."""
        if self.delay_s > 0 and (self.delay_protocols is None or protocol in self.delay_protocols):
            return self.delay_s
        return 0.0

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> "FaultPlan":
        known = {f.name for f in fields(cls)}
        unknown = set(m) - known
        if unknown:
            raise ValueError(f"unknown fault plan keys: {sorted(unknown)}")
        kw: dict[str, Any] = dict(m)
        for name in ("tamper", "crash_points"):
            if name in kw:
                kw[name] = frozenset(kw[name])
        if kw.get("delay_protocols") is not None:
            kw["delay_protocols"] = frozenset(kw["delay_protocols"])
        if "delay_s" in kw:
            kw["delay_s"] = float(kw["delay_s"])
        return cls(**kw)


#: what production runs with
NO_FAULTS = FaultPlan()
#: the keys a node.toml [testing] table may no longer carry (they are a FaultPlan now)
FAULT_KEYS = frozenset(f.name for f in fields(FaultPlan))
