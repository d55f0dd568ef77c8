"""A sign request's states and the one table of steps between them (in the style of h11's
``_state.py``). A request is created ``pending`` (waiting for approvals); it starts
``signing`` once the policy's rule is met, and ends ``signed`` or ``failed``; a pending one
may instead be ``rejected`` (a rejection or the initiator's cancel), ``expired`` (its validity
window passed, or the policy changed) or ``failed`` (the policy denies it now).
:func:`transition` refuses every step that is not in :data:`TRANSITIONS`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from appliance.state_table import InvalidTransition, make_transition  # noqa: F401 (InvalidTransition: the table's error)

PENDING = "pending"
SIGNING = "signing"
SIGNED = "signed"
FAILED = "failed"
REJECTED = "rejected"
EXPIRED = "expired"

STATES = (PENDING, SIGNING, SIGNED, FAILED, REJECTED, EXPIRED)
TERMINAL = (SIGNED, FAILED, REJECTED, EXPIRED)
EVENTS = ("approve", "sign", "fail", "reject", "expire", "deny")

TRANSITIONS: dict[tuple[str, str], str] = {
    (PENDING, "approve"): SIGNING,  # the rule is met: the signers are picked, the job runs
    (PENDING, "reject"): REJECTED,  # an approver rejected it, or its initiator cancelled it
    (PENDING, "expire"): EXPIRED,  # its validity window passed, or the policy changed
    (PENDING, "deny"): FAILED,  # the policy refuses it now (e.g. a limit reached)
    (SIGNING, "sign"): SIGNED,
    (SIGNING, "fail"): FAILED,
}


transition = make_transition("a sign request", TRANSITIONS)


@dataclass(frozen=True)
class SignRequest:
    """A sign request as this node keeps it (the store's row, typed)."""
    request_id: str
    key_id: str
    status: str
    signers: tuple[str, ...] | None
    digest: bytes | None
    derivation_path: str | None
    initiator: str

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "SignRequest":
        return cls(row["request_id"], row["key_id"], row["status"],
                   tuple(row["signers"]) if row["signers"] else None, row["digest"],
                   row["derivation_path"], row["initiator"])
