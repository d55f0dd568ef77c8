"""Who may read what in the approval console (issue 17), from the policy alone: the pending
list shows a person the requests they may approve (their roles meet the key's rule); a
request's page, its approval statement and its audit entries are for those who may approve
or initiate on its key, its initiator, and auditors. A person who may do neither gets
``ui_not_permitted`` (403), whether or not the request exists elsewhere in the list."""

from __future__ import annotations

from appliance.errors import ServiceError
from appliance.policy import Policy

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
    """Raise ``ui_not_permitted`` unless ``user_id`` may read the request ``view``."""
    if not may_read(policy, user_id, view.get("key_id"), view.get("initiator")):
        raise ServiceError("ui_not_permitted", f"{user_id} may neither approve nor initiate "
                           "requests on this key (nor audit)")
