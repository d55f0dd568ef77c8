"""Policy updates: a new policy takes effect only when the current policy's
``policy_change`` quorum has signed it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from appliance.canonical import canonical_json
from appliance.errors import PolicyDenied
from appliance.policy.grammar import (
    HEX32,
    POLICY_UPDATE_TYPE,
    check_id,
    parse_statement_json,
    sig_hex,
    want,
)
from appliance.policy.keys import sign_message
from appliance.policy.model import Policy, User


@dataclass(frozen=True)
class PolicyUpdate:
    """A new policy with the signatures of the current policy's admins."""

    policy: Policy
    previous_policy_hash: str
    signatures: tuple[tuple[str, bytes], ...] = ()

    def statement(self) -> dict:
        return {"type": POLICY_UPDATE_TYPE, "cluster_id": self.policy.cluster_id,
                "previous_policy_hash": self.previous_policy_hash,
                "policy_hash": self.policy.hash, "version": self.policy.version}

    def message(self) -> bytes:
        """The bytes each admin signs."""
        return canonical_json(self.statement())

    def signed_by(self, admin: str, private_key: Any) -> PolicyUpdate:
        sig = sign_message(private_key, self.message())
        return replace(self, signatures=(*self.signatures, (admin, sig)))

    def to_json(self) -> dict:
        return {"policy": self.policy.canonical(),
                "previous_policy_hash": self.previous_policy_hash,
                "signatures": [{"user": u, "signature": s.hex()} for u, s in self.signatures]}

    @classmethod
    def from_json(cls, data: Any) -> PolicyUpdate:
        if isinstance(data, (bytes, str)):
            data = parse_statement_json(data)
        want(isinstance(data, Mapping)
             and set(data) == {"policy", "previous_policy_hash", "signatures"},
             "a policy update is {policy, previous_policy_hash, signatures}")
        sigs = data["signatures"]
        want(isinstance(sigs, list) and all(isinstance(s, Mapping) and set(s) == {"user", "signature"}
                                             for s in sigs), "signatures: [{user, signature}]")
        prev = data["previous_policy_hash"]
        want(isinstance(prev, str) and HEX32.match(prev) is not None,
             "previous_policy_hash must be 64 lowercase hex characters")
        return cls(Policy.from_mapping(data["policy"]), prev,
                   tuple((check_id(s["user"], "user"), sig_hex(s["signature"])) for s in sigs))


def verify_policy_update(current: Policy, update: PolicyUpdate) -> Policy:
    """The new policy if the current policy's ``policy_change`` quorum signed it, else
    :class:`PolicyDenied` (``wrong_cluster``, ``policy_mismatch``, ``stale_policy``,
    ``unknown_user``, ``missing_role``, ``bad_signature``, ``duplicate_approver``,
    ``missing_quorum``). Any unsound signature refuses the whole update."""
    new = update.policy
    if new.cluster_id != current.cluster_id:
        raise PolicyDenied("wrong_cluster", "the new policy is for another cluster")
    if update.previous_policy_hash != current.hash:
        raise PolicyDenied("policy_mismatch", "the update does not replace the current policy")
    if new.version <= current.version:
        raise PolicyDenied("stale_policy", f"the new policy's version ({new.version}) must be "
                           f"above the current one ({current.version})")
    check_quorum(current, update.message(), update.signatures)
    return new


def check_quorum(current: Policy, message: bytes, signatures: Iterable[tuple[str, bytes]]) -> None:
    """``message`` signed by the ``policy_change`` quorum of ``current`` (a policy update, a
    cluster-config update), else :class:`PolicyDenied` (``unknown_user``, ``missing_role``,
    ``bad_signature``, ``duplicate_approver``, ``missing_quorum``)."""
    rule = current.policy_change
    signers: list[User] = []
    for uid, sig in signatures:
        user = current.user(uid)
        if user is None:
            raise PolicyDenied("unknown_user", f"{uid} is not a user of the current policy",
                               subject=uid)
        if not any(user.has(r) for r in rule.roles):
            raise PolicyDenied("missing_role", f"{uid} holds none of {', '.join(rule.roles)}",
                               subject=uid)
        if not user.key.verify(message, sig):
            raise PolicyDenied("bad_signature", f"{uid}'s signature does not verify", subject=uid)
        if any(s.id == uid for s in signers):
            raise PolicyDenied("duplicate_approver", f"{uid} signed twice", subject=uid)
        signers.append(user)
    if len(signers) < rule.quorum:
        raise PolicyDenied("missing_quorum", f"{len(signers)} of the {rule.quorum} admin "
                           "signatures the current policy asks for")


def apply_updates(base: Policy, updates: Iterable[PolicyUpdate | Mapping | str | bytes]
                  ) -> Policy:
    """The policy in force after ``updates`` (in order), each verified against the one
    before it: what a node does at start-up with the base file and the updates it stored."""
    current = base
    for u in updates:
        upd = u if isinstance(u, PolicyUpdate) else PolicyUpdate.from_json(u)
        current = verify_policy_update(current, upd)
    return current
