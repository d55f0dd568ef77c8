"""What every part of the policy shares: the statement types and reason codes, the id
grammars, :class:`PolicyError`, and the small checks that raise it."""

from __future__ import annotations

import re
from typing import Any

# the statements' grammar is the client library's (one definition for who signs and who checks)
from appliance_client.grammar import (  # noqa: F401  (re-exported)
    ACTIONS,
    APPROVAL_TYPE,
    BIP340,
    BITCOIN_NETWORKS,
    CERT_UPDATE_TYPE,
    DECISIONS,
    DEFAULT_SCHEME,
    ECDSA,
    ED25519,
    HEX32,
    ID,
    KEY_ACTIONS,
    NONCE,
    PAYLOAD_TYPES,
    REQUEST_TYPE,
    SCHEMES,
    SIGN,
    TRANSACTION_TYPES,
    PolicyError,
    canonical_ok,
    check_id,
    check_int,
    check_time,
    only_fields,
    parse_statement_json,
    sig_hex,
    want,
)

POLICY_FORMAT = "appliance-policy/1"
POLICY_UPDATE_TYPE = "appliance/policy-update/v1"

LIFECYCLE_ACTIONS = ("disable", "enable", "delete")  # key-change actions that run no protocol
ALLOWED, PENDING, DENIED = "allowed", "pending", "denied"

#: every reason code the evaluator and the update verifier can give
REASONS = (
    "pending_approval",            # not yet enough approvals (outcome pending)
    "self_approval",               # the initiator approved (or rejected) their own request
    "missing_role",                # initiator or approver lacks a role the rule asks for
    "duplicate_approver",          # one person's decision appears twice
    "approval_for_other_request",  # an approval bound to another request/cluster/policy
    "expired",                     # the request's validity window has passed
    "not_yet_valid",               # a statement dated in the future (beyond clock skew)
    "rate_limited",                # the key's signature budget for the window is spent
    "path_not_allowed",            # derivation path matches no allowed pattern
    "raw_digest_forbidden",        # a bare digest where the rule wants a payload
    "payload_type_not_allowed",    # a payload type the rule does not allow
    "outside_hours",               # outside the rule's hours of the day (UTC)
    "rejected",                    # an approver rejected the request
    "cancelled",                   # the initiator cancelled the request
    "not_initiator",               # a cancel signed by someone else than the initiator
    "bad_signature",               # a statement's signature does not verify
    "unknown_user",                # a signer who is not in the policy
    "bad_request",                 # a malformed statement
    "wrong_cluster",               # a statement for another cluster
    "policy_mismatch",             # made under another policy (hash differs)
    "request_mismatch",            # a job whose key/digest/path differ from its request
    "missing_quorum",              # a policy update without enough admin signatures
    "stale_policy",                # a policy update that does not raise the version
    "stale_cert_update",           # a TLS certificate update that is not the next version
    "cert_mismatch",               # a TLS certificate update for another certificate than the one in force
    # transaction rules (appliance.payloads.rules), evaluated over the decoded payload
    "chain_not_allowed", "destination_denied", "destination_not_allowed", "asset_not_allowed",
    "amount_over_limit", "window_limit_exceeded", "fee_too_high", "fee_unknown",
    "contract_call_not_allowed",
    # a signer node's own checks of a job
    "digest_mismatch",             # the coordinator's digests are not the payload's
    "tweak_mismatch",              # the coordinator's derivation tweaks are not ours
    "request_already_signed",      # this node already took part in signing the request
    # the node's checks of a client's statement against the HTTP-authenticated user
    "initiator_mismatch",          # a request signed for another user than the caller
    "approver_mismatch",           # a decision signed for another user than the caller
    # a passkey (WebAuthn) approval (appliance/policy/passkeys.py; the counter: the node's store)
    "webauthn_bad_challenge", "webauthn_bad_origin", "webauthn_bad_rp",
    "webauthn_user_not_verified", "webauthn_unknown_credential", "webauthn_bad_signature",
    "webauthn_counter_replay",
)

ROLE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
MAX_TTL_S = 366 * 86400


def check_roles(v: Any, what: str) -> tuple[str, ...]:
    if isinstance(v, str):
        v = [v]
    want(isinstance(v, list) and v and all(isinstance(r, str) and ROLE.match(r) for r in v),
         f"{what} must be a non-empty list of role names")
    return tuple(sorted(set(v)))


