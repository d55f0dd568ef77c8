"""One job as run on this node, its sessions' ids, and how a job fails.

Every multi-party operation is a *job* with a random id, run by a set of party indices. A job
has phases, each one protocol session with its own id ``H(job id, phase)[:16]``:

=================  ==========================================================
keygen             keygen (DKG) -> aux (Paillier, ring-Pedersen) -> pending key; commit
                   (with a pooled aux-info, spec ``aux_id``: keygen only, the share bound to it)
aux_gen            aux without a key (appliance/pools/aux_pool.py) -> sealed pooled aux-info
refresh            aux with refresh=True -> pending share of epoch+1; commit
reshare            reshare (senders -> new committee) -> aux on the new committee; commit
import             (share decrypted in the HSM, checked against the dealer's commitments) -> aux; commit
presign            presign -> sealed presignature (own HSM key each)
sign               [presign ->] sign (with a stored presignature: sign only)
frost_nonces       none: a batch of pooled FROST commitments, stored by its one receiver
=================  ==========================================================

A FROST key (spec ``scheme`` schnorr-bip340 or ed25519): keygen is one phase (the FROST DKG,
no aux-info); refresh is one (``refresh``: FROST zero-sharing) and reshare one (``reshare``:
FROST resharing), then commit as above; import has no phase (each node checks its share from
the dealer's bundle, no aux-info), then commits; sign is one FROST session per item: one online round
when the job carries pooled ``commitments`` (one item), else two rounds (nonces made in the
session).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

from appliance.errors import ServiceError

KEY_CHANGES = ("keygen", "refresh", "reshare", "import")  # prepared, then committed, then finalized
ECDSA = "ecdsa-secp256k1"
FROST_SCHEMES = ("schnorr-bip340", "ed25519")  # keygen and sign jobs of these run FROST


def is_frost(spec_or_row: dict) -> bool:
    """A job spec (keygen, refresh, reshare, sign) or key row of a FROST key (``scheme`` absent: ECDSA)."""
    return spec_or_row.get("scheme", ECDSA) in FROST_SCHEMES
MAX_SIGN_ITEMS = 100  # signatures in one sign job: PSBT inputs of ours (the decoder allows 100)


def phase_sid(job_id: str, phase: str) -> bytes:
    return hashlib.sha256(b"appliance/session/" + job_id.encode() + b"/" + phase.encode()).digest()[:16]


class JobFailed(Exception):
    def __init__(self, error: ServiceError) -> None:
        super().__init__(error.message)
        self.error = error


class PeerUnreachable(Exception):
    def __init__(self, index: int) -> None:
        super().__init__(f"party {index} unreachable")
        self.index = index


@dataclass
class JobRun:
    spec: dict
    queues: dict[bytes, asyncio.Queue] = field(default_factory=dict)
    phases: dict[bytes, str] = field(default_factory=dict)
    received: dict[tuple[bytes, int], set[int]] = field(default_factory=dict)
    reports: dict[int, dict] = field(default_factory=dict)
    report_event: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None
    dropped: int = 0
    cancelled: dict | None = None
    result: Any = None
    started: float = field(default_factory=time.monotonic)
    # what this node itself decoded for a sign job (the digests it signs and checks)
    dec: Any = None
    # a sign job's stored presignature, already spent in this node's store
    presig_taken: Any = None
    # a presign coordinator's own presignature, stored only once every party has its own
    presig_held: tuple | None = None
    down_strikes: int = 0

    def __post_init__(self) -> None:
        for ph in self.phase_names():
            sid = phase_sid(self.job_id, ph)
            self.phases[sid] = ph
            self.queues[sid] = asyncio.Queue()

    @property
    def job_id(self) -> str:
        return self.spec["job_id"]

    @property
    def kind(self) -> str:
        return self.spec["kind"]

    @property
    def parties(self) -> list[int]:
        return list(self.spec["parties"])

    @property
    def coordinator(self) -> int:
        return int(self.spec["coordinator"])

    def phase_names(self) -> list[str]:
        k = self.kind
        if k == "keygen":  # with a pooled aux-info (``aux_id``): the DKG only
            return ["keygen"] if is_frost(self.spec) or self.spec.get("aux_id") else ["keygen", "aux"]
        if k == "aux_gen":
            return ["aux"]
        if k == "refresh" and is_frost(self.spec):
            return ["refresh"]
        if k == "import" and is_frost(self.spec):
            return []  # a FROST key's import runs no session (no aux-info)
        if k in ("refresh", "import"):
            return ["aux"]
        if k == "reshare":
            return ["reshare"] if is_frost(self.spec) else ["reshare", "aux"]
        if k == "presign":
            return ["presign"]
        if k == "frost_nonces":
            return []  # no session: the batch of signed commitments is in the job itself
        # sign: one presign + sign per item (a PSBT input each); item 0 may use a stored
        # presignature. Phase names of item 0 are the historic "presign"/"sign".
        items = self.spec.get("items") or [None]
        out: list[str] = []
        for i in range(min(len(items), MAX_SIGN_ITEMS)):
            sfx = "" if i == 0 else f"/{i}"
            if not (i == 0 and self.spec.get("presig_id")) and not is_frost(self.spec):
                out.append(f"presign{sfx}")
            out.append(f"sign{sfx}")
        return out
