"""Who may read what in the approval console (issue 17), from the policy alone: the pending
list shows a person the requests they may approve (their roles meet the key's rule); a
request's page, its approval statement and its audit entries are for those who may approve
or initiate on its key, its initiator, and auditors. To anyone else such a request is
answered exactly as one that does not exist (``not_found``, "unknown sign request": no
existence oracle), and the lists page over readable rows only (:func:`read_scope`: the filter
is in the query, so no page or cursor is made from a row the person may not read)."""

from __future__ import annotations

from appliance.errors import ServiceError
from appliance.policy import Policy
from appliance.ports import ReadScope

AUDITOR = "auditor"


def rule_name(policy: Policy, key_id: str | None) -> str:
    """The policy table a key's sign requests fall under: ``[signing.keys.<id>]`` or ``[signing]``."""
    return f"[signing.keys.{key_id}]" if any(k == key_id for k, _ in policy.key_rules) else "[signing]"


def may_approve(policy: Policy, user_id: str, key_id: str | None) -> bool:
    user = policy.user(user_id)
    return user is not None and any(user.has(r) for r in policy.rule_for(key_id).approver_roles)


def may_read(policy: Policy, user_id: str, key_id: str | None, initiator: str | None) -> bool:
    user = policy.user(user_id)
    if user is None:
        return False
    rule = policy.rule_for(key_id)
    return (user.has(AUDITOR) or user_id == initiator or may_approve(policy, user_id, key_id)
            or any(user.has(r) for r in rule.initiator_roles))


def check_read(policy: Policy, user_id: str, view: dict) -> None:
    """Raise ``not_found`` (as for a request that does not exist) unless ``user_id`` may read
    the request ``view``."""
    if not may_read(policy, user_id, view.get("key_id"), view.get("initiator")):
        raise ServiceError("not_found", "unknown sign request")


def _by_key(policy: Policy, ok) -> ReadScope:
    """The keys ``ok(key_id)`` allows: every key but the listed ones it refuses if the
    default rule allows, else only the listed ones it allows."""
    listed = [k for k, _ in policy.key_rules]
    if ok(None):  # the [signing] rule: any key without its own table
        return ReadScope(keys=None, except_keys=tuple(k for k in listed if not ok(k)))
    return ReadScope(keys=tuple(k for k in listed if ok(k)))


def read_scope(policy: Policy, user_id: str, view: str) -> ReadScope | None:
    """The filter of the ``pending`` list (what the person may approve, not their own) or of
    ``history`` (what they may read); None: no filter (an auditor's history)."""
    user = policy.user(user_id)
    if user is None:
        return ReadScope(keys=())
    if view == "pending":
        return _by_key(policy, lambda k: may_approve(policy, user_id, k))._replace(not_initiator=user_id)
    if user.has(AUDITOR):
        return None

    def reads(k):
        rule = policy.rule_for(k)
        return may_approve(policy, user_id, k) or any(user.has(r) for r in rule.initiator_roles)
    return _by_key(policy, reads)._replace(or_initiator=user_id)
