"""The passkey sign counter: the part of a WebAuthn approval's check that needs the node's
own store. The policy's check (:func:`appliance.policy.passkeys.assertion_problem`) is pure;
this one records each accepted assertion with its counter in the node's replay store, so an
assertion with a counter not above one already accepted for the credential is refused
(``webauthn_counter_replay``: a cloned authenticator, or an assertion replayed under
another statement that a broken check let through), while the same assertion re-checked (the
coordinator on a new decision, each signer in the sign job) passes again. Each node keeps its
own record: a signer checks every assertion in the job itself. A console sign-in
(appliance/ui_sessions.py) is an assertion of the same authenticator: it is recorded under
the same rule (in order), so a clone cannot sign in either. A signer may see two requests
approved with one passkey in another order than they were approved (the first waits for a
second approver), so it refuses a counter another assertion had, not one below the highest."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

from appliance.errors import PolicyDenied
from appliance.policy import Approval, Policy
from appliance.policy.passkeys import Passkey, sign_count
from appliance.ports import ReplayStore
from appliance_client.statements import WebAuthnAssertion


def passkey_of(policy: Policy, approval: Approval) -> Passkey | None:
    """The policy's passkey a WebAuthn approval names (None for a key-file approval)."""
    wa = approval.webauthn
    user = policy.user(approval.approver)
    if wa is None or user is None:
        return None
    return next((p for p in user.passkeys if p.id == wa.credential), None)


def describe(policy: Policy, approvals: Iterable[Approval]) -> str:
    """The passkeys named by ``approvals`` for an audit entry's reason ('' if none)."""
    names = [f"{a.approver} by {p.name}" for a in approvals
             if (p := passkey_of(policy, a)) is not None]
    return "; ".join(names)


def check_counter(store: Callable[[], ReplayStore], who: str, key: Passkey, wa: WebAuthnAssertion, *,
                  in_order: bool = True) -> None:
    """Record one accepted assertion of ``who``'s passkey ``key`` with its sign counter in
    ``store()``; raise :class:`PolicyDenied` ``webauthn_counter_replay`` if the counter does not
    increase (``in_order``) or repeats another assertion's (not ``in_order``)."""
    assertion_id = hashlib.sha256(wa.authenticator_data + wa.client_data_json + wa.signature).hexdigest()
    counter = sign_count(wa)
    if not store().note_assertion(key.id, counter, assertion_id, in_order=in_order):
        how = ("is not above one this node already accepted" if in_order or counter == 0
               else "was another assertion's that this node already accepted")
        raise PolicyDenied("webauthn_counter_replay", f"{who}'s {key.name}: sign "
                           f"counter {counter} {how}", subject=who)


def check_counters(store: Callable[[], ReplayStore], policy: Policy, approvals: Iterable[Approval], *,
                   in_order: bool = True) -> None:
    """Record each WebAuthn approval's assertion with its sign counter in ``store()`` (call
    after the policy accepted them); raise :class:`PolicyDenied` ``webauthn_counter_replay``
    naming the approver and the passkey if one's counter does not increase (``in_order``: the
    node recording a decision) or repeats another assertion's (a signer: two requests
    approved with one passkey may reach it in either order)."""
    for a in approvals:
        key = passkey_of(policy, a)
        if a.webauthn is not None and key is not None:
            check_counter(store, a.approver, key, a.webauthn, in_order=in_order)
