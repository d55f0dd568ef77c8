"""Can anybody meet a rule? :func:`assign` counts distinct people towards approval groups (what
the evaluator does with real approvals); :func:`signing_problem` and :func:`quorum_problem` ask
whether *some* set of the policy's users could ever meet a rule, so that a policy nobody can
satisfy is refused when it is loaded, naming the rule, rather than found out at the first
request. Works on the policy's User and ApprovalGroup objects (``.has(role)``, ``.id``;
``.roles``, ``.count``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def assign(groups: Sequence[Any], people: Sequence[Any]) -> tuple[list[str], list]:
    """Count distinct people towards groups (each person fills at most one slot): a maximum
    bipartite matching people -> slots. Returns (counted ids, [(roles, missing)])."""
    slots = [gi for gi, g in enumerate(groups) for _ in range(g.count)]
    owner: dict[int, int] = {}  # slot -> person index

    def try_place(pi: int, seen: set[int]) -> bool:
        for si, gi in enumerate(slots):
            if si in seen or not any(people[pi].has(r) for r in groups[gi].roles):
                continue
            seen.add(si)
            if si not in owner or try_place(owner[si], seen):
                owner[si] = pi
                return True
        return False

    for pi in range(len(people)):
        try_place(pi, set())
    counted = sorted(people[pi].id for pi in owner.values())
    missing = []
    for gi, g in enumerate(groups):
        filled = sum(1 for si, sg in enumerate(slots) if sg == gi and si in owner)
        if filled < g.count:
            missing.append((g.roles, g.count - filled))
    return counted, missing


def _roles(roles: Sequence[str]) -> str:
    return " or ".join(f'"{r}"' for r in roles)


def _holders(users: Sequence[Any], roles: Sequence[str]) -> list[str]:
    return [u.id for u in users if any(u.has(r) for r in roles)]


def _who(ids: Sequence[str]) -> str:
    return f"only {len(ids)} user{'' if len(ids) == 1 else 's'} hold{'s' if len(ids) == 1 else ''} it" \
        + (f" ({', '.join(ids)})" if ids else "")


def signing_problem(where: str, rule: Any, users: Sequence[Any]) -> str | None:
    """Why no set of ``users`` can ever get a signature through ``rule`` (a SigningRule at
    table ``where``), or None. The initiator may not approve their own request, and each
    approval counts towards one group."""
    initiators = [u for u in users if any(u.has(r) for r in rule.initiator_roles)]
    if not initiators:
        return (f"{where} initiator_roles: signing needs an initiator with role "
                f"{_roles(rule.initiator_roles)} but no user has it")
    for g in rule.approvals:
        ids = _holders(users, g.roles)
        if len(ids) < g.count:
            return (f"{where} approvals: signing needs {g.count} approver{'s' if g.count > 1 else ''} "
                    f"with role {_roles(g.roles)} but {_who(ids) if ids else 'no user has it'}")
    total = sum(g.count for g in rule.approvals)
    counted, missing = assign(rule.approvals, users)
    if missing:
        return (f"{where} approvals: signing needs {total} distinct approvers across its groups "
                f"(one person counts once) but at most {len(counted)} can be found among the users")
    best: tuple[int, str] | None = None
    for u in initiators:
        others = [o for o in users if o.id != u.id]
        counted, missing = assign(rule.approvals, others)
        if not missing:
            return None
        if best is None or len(counted) > best[0]:
            best = (len(counted), u.id)
    assert best is not None
    return (f"{where} approvals: signing needs {total} approver{'s' if total > 1 else ''} besides "
            f"the initiator (who may not approve their own request), but with any initiator "
            f"({', '.join(u.id for u in initiators)}) at most {best[0]} remain{'s' if best[0] == 1 else ''}")


def quorum_problem(where: str, rule: Any, users: Sequence[Any], what: str) -> str | None:
    """Why no set of ``users`` can meet the quorum ``rule`` (a QuorumRule at ``where``; the
    requester counts), or None."""
    ids = _holders(users, rule.roles)
    if len(ids) >= rule.quorum:
        return None
    return (f"{where} quorum: {rule.quorum} distinct users with role {_roles(rule.roles)} are "
            f"needed but {_who(ids) if ids else 'no user has it'}: the cluster could never "
            f"change {what}")
