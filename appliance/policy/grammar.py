"""What every part of the policy shares: the statement types and reason codes, the id
grammars, :class:`PolicyError`, and the small checks that raise it."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from appliance.canonical import CanonicalError, canonical_json, parse_json
from appliance.errors import ApplianceError
from appliance.payloads.types import PAYLOAD_TYPES as PAYLOAD_TYPES
from appliance.payloads.types import TRANSACTION_TYPES as TRANSACTION_TYPES

POLICY_FORMAT = "appliance-policy/1"
REQUEST_TYPE = "appliance/request/v1"
APPROVAL_TYPE = "appliance/approval/v1"
POLICY_UPDATE_TYPE = "appliance/policy-update/v1"
CERT_UPDATE_TYPE = "appliance/tls-cert-update/v1"

SIGN = "sign"
KEY_ACTIONS = ("keygen", "refresh", "reshare", "import", "disable", "enable", "delete")
LIFECYCLE_ACTIONS = ("disable", "enable", "delete")  # key-change actions that run no protocol
ACTIONS = (SIGN, *KEY_ACTIONS)
DECISIONS = ("approve", "reject", "cancel")
# PAYLOAD_TYPES (what a request may carry) and TRANSACTION_TYPES (a rule's default) are the
# payload layer's (appliance/payloads/types.py): one list
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
)
BITCOIN_NETWORKS = ("mainnet", "testnet", "signet", "regtest")

ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}$")
ROLE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
HEX32 = re.compile(r"^[0-9a-f]{64}$")
NONCE = re.compile(r"^[A-Za-z0-9._:+/=-]{1,128}$")
MAX_TTL_S = 366 * 86400


class PolicyError(ApplianceError, ValueError):
    """A policy file or a statement that cannot be parsed (not a decision)."""

    code = "bad_policy"



def want(cond: bool, msg: str) -> None:
    if not cond:
        raise PolicyError(msg)


def check_int(v: Any, what: str, lo: int, hi: int) -> int:
    want(type(v) is int and lo <= v <= hi, f"{what} must be an integer in [{lo}, {hi}]")
    return v


def check_roles(v: Any, what: str) -> tuple[str, ...]:
    if isinstance(v, str):
        v = [v]
    want(isinstance(v, list) and v and all(isinstance(r, str) and ROLE.match(r) for r in v),
         f"{what} must be a non-empty list of role names")
    return tuple(sorted(set(v)))


def only_fields(m: Mapping, allowed: Iterable[str], where: str) -> None:
    extra = sorted(set(m) - set(allowed))
    want(not extra, f"unknown field(s) in {where}: {', '.join(extra)}")


def canonical_ok(v: Any, what: str) -> None:
    try:
        canonical_json(v)
    except CanonicalError as exc:
        raise PolicyError(f"{what}: {exc}") from None


def check_id(v: Any, what: str) -> str:
    if not isinstance(v, str) or ID.match(v) is None:
        raise PolicyError(f"{what} must be an id")
    return v


def check_time(v: Any, what: str) -> int:
    if type(v) is not int or not 0 <= v <= 2**40:
        raise PolicyError(f"{what} must be integer seconds since the epoch")
    return v


def parse_statement_json(data: bytes | str) -> Any:
    try:
        return parse_json(data)
    except CanonicalError as exc:
        raise PolicyError(str(exc)) from None


def sig_hex(v: Any) -> bytes:
    if not isinstance(v, str) or len(v) > 300:
        raise PolicyError("a signature is hex")
    try:
        return bytes.fromhex(v)
    except ValueError:
        raise PolicyError("a signature is hex") from None
