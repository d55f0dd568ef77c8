"""Evaluation: :func:`evaluate` (pure: time and rate-limit usage passed in) gives a
:class:`Decision`; :func:`check_approval` checks one decision before a node stores it;
:func:`authorize` is everything a signer node checks before it joins a job."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from appliance.canonical import CanonicalError
from appliance.errors import PolicyDenied
from appliance.policy.grammar import ALLOWED, DENIED, PENDING, SIGN, PolicyError
from appliance.policy.model import ApprovalGroup, Policy, User
from appliance.policy.passkeys import assertion_problem
from appliance.policy.paths import normalize_path, path_matches
from appliance.policy.satisfiable import assign
from appliance.policy.statements import APPROVAL_BINDING, SHOWN_FIELDS, Approval, Request, SignedRequest

#: what a sign request's approval binds of what its approver was shown: (summary_hash of the
#: decoded summary, network), from the checking node's own decode; (None, None) for a key
#: operation. ``LATER``: a signer that checks them itself once it has decoded the payload
#: (:func:`shown_problem`, appliance/signing/sign_job.py).
Shown = tuple[str | None, str | None]
NOT_SHOWN: Shown = (None, None)
LATER = "later"


@dataclass(frozen=True)
class Decision:
    outcome: str                        # allowed | pending | denied
    reason: str | None = None           # None when allowed
    message: str = ""
    subject: str | None = None          # the user the reason is about, where there is one
    approvers: tuple[str, ...] = ()     # the people counted towards the rule
    missing: tuple[tuple[tuple[str, ...], int], ...] = ()  # (roles, how many more)

    @property
    def allowed(self) -> bool:
        return self.outcome == ALLOWED

    @property
    def pending(self) -> bool:
        return self.outcome == PENDING

    @property
    def denied(self) -> bool:
        return self.outcome == DENIED

    def require_allowed(self) -> Decision:
        """Raise :class:`PolicyDenied` unless allowed (what a signer node does)."""
        if not self.allowed:
            raise PolicyDenied(self.reason or "denied", self.message, subject=self.subject)
        return self

    def to_json(self) -> dict:
        out: dict[str, Any] = {"outcome": self.outcome, "reason": self.reason,
                               "approvers": list(self.approvers)}
        if self.missing:
            out["missing"] = [{"roles": list(r), "count": n} for r, n in self.missing]
        return out


def deny(reason: str, message: str, subject: str | None = None) -> Decision:
    return Decision(DENIED, reason, message, subject)


#: rate-limit usage: the number of signatures already made with ``key_id`` in the last
#: ``window_s`` seconds; an int (already counted for the rule's window) or a callable
Usage = int | Callable[[str, int], int]


def in_hours(hours: tuple[int, int], now: float) -> bool:
    start, end = hours
    h = int(now // 3600) % 24
    if start < end:
        return start <= h < end
    return h >= start or h < end


def check_approval(
    policy: Policy, request: Request, approval: Approval, now: float,
    existing: Iterable[Approval] = (), shown: Shown | str = NOT_SHOWN,
) -> Decision | None:
    """Check one decision against its request: None if it is sound and counts, else a
    ``denied`` Decision with the reason (what a node does before it stores an approval).
    ``existing``: decisions already recorded (a second one by the same person is refused).
    An approval past its validity gives reason ``expired`` here; :func:`evaluate` just does
    not count it."""
    problem = _approval_problem(policy, request, approval, now, shown)
    if problem is not None:
        return problem
    if any(a.approver == approval.approver for a in existing):
        return deny("duplicate_approver", f"{approval.approver} already decided on this "
                    "request", approval.approver)
    if _approval_expired(policy, request, approval, now):
        return deny("expired", "the approval has expired", approval.approver)
    return None


def _approval_ttl(policy: Policy, request: Request) -> int:
    if request.action == SIGN:
        return policy.rule_for(request.key_id).approval_ttl_s
    return policy.key_changes.approval_ttl_s


def _approval_expired(policy: Policy, request: Request, a: Approval, now: float) -> bool:
    until = min(a.expires_at, a.signed_at + _approval_ttl(policy, request))
    return now >= until


def _other_request(a: Approval, diff: list[str]) -> Decision:
    return deny("approval_for_other_request", f"{a.approver}'s {a.decision} was made for another request "
                f"({', '.join(diff)} differ)", a.approver)


def shown_problem(approvals: Iterable[Approval], shown: Shown) -> Decision | None:
    """A signer's check, once it has decoded the payload itself, that every decision binds
    the summary and network it decoded (``approval_for_other_request`` naming the field)."""
    want = dict(zip(SHOWN_FIELDS, shown))
    for a in approvals:
        diff = sorted(k for k in SHOWN_FIELDS if a.binding.get(k) != want[k])
        if diff:
            return _other_request(a, diff)
    return None


def _approval_problem(policy: Policy, request: Request, a: Approval, now: float,
                      shown: Shown | str = NOT_SHOWN) -> Decision | None:
    later = shown == LATER
    binding = request.binding() if later else request.binding(*shown)
    diff = sorted(k for k in APPROVAL_BINDING if a.binding.get(k) != binding.get(k)
                  and not (later and k in SHOWN_FIELDS))
    if diff:
        return _other_request(a, diff)
    user = policy.user(a.approver)
    if user is None:
        return deny("unknown_user", f"{a.approver} is not a user of this policy", a.approver)
    if a.webauthn is not None:
        _, refusal = assertion_problem(policy.webauthn, user.passkeys, a)
        if refusal is not None:
            return deny(refusal.reason, refusal.message, a.approver)
    elif not user.key.verify(a.message(), a.signature):
        return deny("bad_signature", f"{a.approver}'s {a.decision} is not signed by "
                    "their key", a.approver)
    if a.signed_at > now + policy.clock_skew_s:
        return deny("not_yet_valid", f"{a.approver}'s {a.decision} is dated in the future",
                    a.approver)
    if a.decision == "cancel":
        if a.approver != request.initiator:
            return deny("not_initiator", "only the initiator may cancel a request", a.approver)
        return None
    if a.approver == request.initiator:
        return deny("self_approval", "the initiator cannot approve or reject their own "
                    "request", a.approver)
    roles = (policy.rule_for(request.key_id).approver_roles if request.action == SIGN
             else frozenset(policy.key_changes.roles))
    if not any(user.has(r) for r in roles):
        return deny("missing_role", f"{a.approver} holds none of the roles "
                    f"{', '.join(sorted(roles))}", a.approver)
    return None


def evaluate(
    policy: Policy,
    request: SignedRequest,
    approvals: Iterable[Approval],
    now: float,
    usage: Usage = 0,
    shown: Shown | str = NOT_SHOWN,
) -> Decision:
    """Decide on ``request`` with the decisions recorded on it, at time ``now`` (Unix
    seconds), given the key's signature ``usage`` in the rule's window. Pure.

    Order: the request itself (cluster, policy hash, initiator, role, signature); every
    decision (bound to this request, known signer, signature, self-approval, role,
    duplicates) -- one unsound decision denies, since an honest coordinator never forwards
    one; a cancel or a rejection; the request's validity window; the rule's limits (raw
    digest / payload type, path, hours, rate); then the approvals counted (distinct people,
    each towards one group; expired ones do not count)."""
    if not isinstance(request, SignedRequest):
        raise TypeError("evaluate() takes a SignedRequest")
    req = request.request
    approvals = list(approvals)
    if req.cluster_id != policy.cluster_id:
        return deny("wrong_cluster", f"request is for cluster {req.cluster_id!r}")
    if req.policy_hash != policy.hash:
        return deny("policy_mismatch", "request was made under another policy")
    initiator = policy.user(req.initiator)
    if initiator is None:
        return deny("unknown_user", f"{req.initiator} is not a user of this policy",
                    req.initiator)
    if req.action == SIGN:
        rule = policy.rule_for(req.key_id)
        init_roles, ttl = rule.initiator_roles, rule.request_ttl_s
    else:
        rule = None
        init_roles, ttl = policy.key_changes.roles, policy.key_changes.request_ttl_s
    if not any(initiator.has(r) for r in init_roles):
        return deny("missing_role", f"{req.initiator} may not request {req.action} "
                    f"(needs {', '.join(init_roles)})", req.initiator)
    if not request.verify(policy):
        return deny("bad_signature", "the request is not signed by its initiator's key",
                    req.initiator)

    seen: set[str] = set()
    counted_people: list[User] = []
    expired_approvals = []
    cancelled = rejected = None
    for a in approvals:
        problem = _approval_problem(policy, req, a, now, shown)
        if problem is not None:
            return problem
        if a.approver in seen:
            return deny("duplicate_approver", f"{a.approver} appears twice", a.approver)
        seen.add(a.approver)
        if a.decision == "cancel":
            cancelled = cancelled or a
        elif a.decision == "reject":
            rejected = rejected or a
        elif _approval_expired(policy, req, a, now):
            expired_approvals.append(a.approver)
        else:
            counted_people.append(policy.user(a.approver))
    if cancelled is not None:
        return deny("cancelled", "the initiator cancelled the request", cancelled.approver)
    if rejected is not None:
        why = f": {rejected.reason}" if rejected.reason else ""
        return deny("rejected", f"{rejected.approver} rejected the request{why}", rejected.approver)

    if req.created_at > now + policy.clock_skew_s:
        return deny("not_yet_valid", "the request is dated in the future", req.initiator)
    if now >= min(req.expires_at, req.created_at + ttl):
        return deny("expired", "the request has expired")

    if rule is not None:
        if req.digest is not None and not rule.allow_raw_digest:
            return deny("raw_digest_forbidden", "this key signs payloads, not bare digests")
        if req.payload_type is not None and req.payload_type not in rule.payload_types:
            return deny("payload_type_not_allowed", f"payload type {req.payload_type} is not allowed")
        if not any(path_matches(p, req.derivation_path) for p in rule.derivation_paths):
            return deny("path_not_allowed", f"derivation path {req.derivation_path} is not "
                        "allowed for this key")
        if rule.hours_utc is not None and not in_hours(rule.hours_utc, now):
            return deny("outside_hours", f"signing is allowed {rule.hours_utc[0]:02d}:00 to "
                        f"{rule.hours_utc[1]:02d}:00 UTC")
        if rule.max_signatures is not None:
            used = usage(req.key_id, rule.window_s) if callable(usage) else int(usage)
            if used >= rule.max_signatures:
                return deny("rate_limited", f"{used} signatures in the last {rule.window_s} s "
                            f"(limit {rule.max_signatures})")
        groups = rule.approvals
        people = counted_people
    else:
        groups = (ApprovalGroup(policy.key_changes.roles, policy.key_changes.quorum),)
        people = [initiator, *counted_people]  # the requesting admin counts

    counted, missing = assign(groups, people)
    if missing:
        need = "; ".join(f"{n} more of {'/'.join(r)}" for r, n in missing)
        note = f" ({', '.join(expired_approvals)}: approval expired)" if expired_approvals else ""
        return Decision(PENDING, "pending_approval", f"waiting for approval: {need}{note}",
                        approvers=tuple(counted), missing=tuple(missing))
    return Decision(ALLOWED, None, "the policy is met", approvers=tuple(counted))


def check_job_binding(
    request: Request, *, action: str, key_id: str | None, digest: bytes | str | None = None,
    derivation_path: str | None = None,
) -> Decision | None:
    """A signer node's check that the job it is asked to join is the request's: same
    action, key, digest and path. None if it is, else ``request_mismatch``."""
    if isinstance(digest, (bytes, bytearray)):
        digest = bytes(digest).hex()
    diff = []
    if action != request.action:
        diff.append("action")
    if key_id != request.key_id:
        diff.append("key_id")
    if request.action == SIGN:
        try:
            path = normalize_path(derivation_path)
        except PolicyError:
            path = None
        if path != request.derivation_path:
            diff.append("derivation_path")
        if request.digest is not None and digest != request.digest:
            diff.append("digest")
    if diff:
        return deny("request_mismatch", f"the job differs from the signed request in "
                    f"{', '.join(diff)}")
    return None




def authorize(
    policy: Policy, request: SignedRequest | Mapping | str | bytes,
    approvals: Iterable[Approval | Mapping | str | bytes], *, now: float, usage: Usage = 0,
    action: str | None = None, key_id: str | None = None, digest: bytes | str | None = None,
    derivation_path: str | None = None, policy_hash: str | None = None, shown: Shown | str = NOT_SHOWN,
) -> Decision:
    """Everything a signer node checks before it joins a job, in one call: the job's
    ``policy_hash`` (if given) is ours, the request and approvals parse, the job is the
    signed request's (when ``action`` is given: key, digest, path), and :func:`evaluate`.
    Never raises on bad input: a malformed statement is ``denied``/``bad_request``."""
    if policy_hash is not None and policy_hash != policy.hash:
        return deny("policy_mismatch", "the job was opened under another policy")
    try:
        sr = request if isinstance(request, SignedRequest) else SignedRequest.from_json(request)
        appr = [a if isinstance(a, Approval) else Approval.from_json(a) for a in approvals]
    except (PolicyError, CanonicalError) as exc:
        return deny("bad_request", f"malformed statement: {exc}")
    if action is not None:
        mismatch = check_job_binding(sr.request, action=action, key_id=key_id, digest=digest,
                                     derivation_path=derivation_path)
        if mismatch is not None:
            return mismatch
    return evaluate(policy, sr, appr, now, usage, shown)
