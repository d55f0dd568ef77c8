"""The policy file's typed schema: one msgspec Struct per table, unknown keys refused and
types checked before :meth:`appliance.policy.Policy.from_mapping` reads the values (ranges,
role names, paths, transaction rules and satisfiability are checked there). Every error names
the table and the key (:func:`appliance.schema.decode`); :meth:`Policy.load` adds the file."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from msgspec import Struct

from appliance.policy.grammar import PolicyError
from appliance.schema import decode

Roles = str | list[str]  # one role name or a list (appliance.policy.grammar.check_roles)


class _Table(Struct, forbid_unknown_fields=True, frozen=True):
    pass


class PolicyTable(_Table):
    format: str | None = None
    cluster_id: str | None = None
    version: int | None = None
    clock_skew_s: int | None = None


class PasskeyEntry(_Table):
    """A WebAuthn credential (appliance/policy/passkeys.py checks the values)."""

    id: str
    public_key: str  # the COSE_Key, base64url
    alg: int         # -7 ES256, -8 EdDSA
    label: str = ""


class UserEntry(_Table):
    id: str
    public_key: str
    roles: list[str] = []
    passkeys: list[PasskeyEntry] = []


class WebAuthnTable(_Table):
    rp_id: str
    origins: list[str]


class ApprovalGroupEntry(_Table):
    roles: Roles | None = None
    role: Roles | None = None
    count: int | None = None


class RuleTable(_Table):
    """``[signing]`` and each ``[signing.keys."KEY"]``."""

    initiator_roles: Roles | None = None
    approvals: list[ApprovalGroupEntry] | None = None
    request_ttl_s: int | None = None
    approval_ttl_s: int | None = None
    max_signatures: int | None = None
    window_s: int | None = None
    derivation_paths: list[str] | None = None
    allow_raw_digest: bool | None = None
    payload_types: list[str] | None = None
    hours_utc: list[int] | None = None
    transactions: dict[str, Any] | None = None  # appliance.payloads.TxRules checks the rest


class SigningTable(RuleTable):
    keys: dict[str, dict[str, Any]] | None = None  # each a RuleTable (checked one by one)


class QuorumTable(_Table):
    roles: Roles | None = None
    quorum: int | None = None
    request_ttl_s: int | None = None
    approval_ttl_s: int | None = None


class PolicyFile(_Table):
    policy: PolicyTable | None = None
    users: list[UserEntry] | None = None
    signing: SigningTable | None = None
    key_changes: QuorumTable | None = None
    policy_change: QuorumTable | None = None
    webauthn: WebAuthnTable | None = None
    cluster: dict[str, Any] | None = None  # cluster.toml's own tables (appliance.config checks
    nodes: list[Any] | None = None         # them) when the policy lives in cluster.toml


def check_policy_schema(m: Mapping) -> None:
    """Raise :class:`PolicyError` naming the table and the key of the first unknown key or
    wrong type in the policy mapping ``m``."""
    f = decode(m, PolicyFile, PolicyError)
    for kid, rule in ((f.signing.keys or {}) if f.signing is not None else {}).items():
        decode(rule, RuleTable, PolicyError, where=f"[signing.keys.{kid}]")
