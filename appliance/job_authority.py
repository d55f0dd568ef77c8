"""Which statement authorizes each kind of job, and the coordinator's signature over a job.

The rule, checked by every party in ``appliance.jobs.participant.Participant.accept`` before it
does anything: **no job reaches a party without an authorizing statement that the party checks
itself.**

============================  ==============================================================
kind                          authorizing statement (checked by every party)
============================  ==============================================================
every kind                    the job description signed by its coordinator's HSM identity
                              key; the coordinator is the TLS-authenticated peer. A stolen TLS
                              key alone opens no job.
sign                          and the initiator's signed request with approvals meeting the
                              policy in force (re-evaluated here), the payload decoded and
                              the digests recomputed here, the transaction rules applied here
keygen, import,               and the initiator's signed key-change request with the policy's
refresh, reshare,             key-change quorum of admins, its params equal to the job's (for
                              an import: the hash of the very bundle, its public key,
                              threshold and nodes)
disable, enable, delete       (the same: a key-change request, params ``{}``)
presign                       the coordinator's signature alone: a presignature signs nothing;
                              the party checks it holds the key at that epoch with the parties
frost_nonces                  the coordinator's signature alone: pooled FROST commitments sign
                              nothing; the party holds the key at that epoch and stores each
                              commitment only if the coordinator's identity key signed it
aux_gen                       the coordinator's signature alone: a pooled aux-info (Paillier
                              and ring-Pedersen, no key) signs nothing; the party checks the
                              committee, the modulus size and that the aux id is new. A keygen
                              that uses one is a user-request job: each party checks the aux id
                              (it holds it, same committee and size, room for another key)
============================  ==============================================================

A kind missing from :data:`JOB_AUTHORITY` is refused.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from appliance.tss.protocol import IdentityDirectory

#: kind -> what authorizes it (the table above)
JOB_AUTHORITY: dict[str, str] = {
    "sign": "user_request",
    "keygen": "user_request",
    "import": "user_request",
    "refresh": "user_request",
    "reshare": "user_request",
    "disable": "user_request",
    "enable": "user_request",
    "delete": "user_request",
    "presign": "coordinator",
    "frost_nonces": "coordinator",
    "aux_gen": "coordinator",
}

COORDINATOR_SIG = "coordinator_sig"
_CONTEXT = b"threshold-appliance/job-statement/v1\x00"


def job_digest(spec: dict[str, Any]) -> bytes:
    """SHA-256 over the job description without its signature, as JSON with sorted keys (both
    sides serialize what the JSON wire carries, so the bytes agree)."""
    body = {k: v for k, v in spec.items() if k != COORDINATOR_SIG}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(_CONTEXT + text.encode()).digest()


def as_wire(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` as the receiving party will see it (tuples become lists, and so on)."""
    return json.loads(json.dumps(spec))


def identity_signed(directory: IdentityDirectory, party: int, digest: bytes, sig: Any) -> bool:
    """``sig`` (hex of a 64-byte compact signature, as the wire carries it) is ``party``'s
    HSM identity signature over ``digest``."""
    if not isinstance(sig, str) or len(sig) != 128:
        return False
    try:
        raw = bytes.fromhex(sig)
    except ValueError:
        return False
    return directory.verify(party, digest, raw)


def coordinator_signature_ok(spec: dict[str, Any], coordinator: int,
                             directory: IdentityDirectory) -> bool:
    return identity_signed(directory, coordinator, job_digest(spec), spec.get(COORDINATOR_SIG))
