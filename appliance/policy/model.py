"""The policy itself: users, signing and quorum rules, :class:`Policy` (parsing, canonical
form and hash, TOML), and :func:`default_policy`."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import tomli_w

from appliance.canonical import canonical_json, sha256_hex
from appliance.errors import ApplianceError
from appliance.payloads.rules import TxRules
from appliance.policy.grammar import (
    BITCOIN_NETWORKS,
    ID,
    MAX_TTL_S,
    PAYLOAD_TYPES,
    POLICY_FORMAT,
    TRANSACTION_TYPES,
    ROLE,
    PolicyError,
    check_int,
    check_roles,
    only_fields,
    parse_statement_json,
    want,
)
from appliance.policy.keys import UserKey
from appliance.policy.passkeys import MAX_PASSKEYS, Passkey, WebAuthnSettings
from appliance.policy.paths import parse_pattern
from appliance.policy.satisfiable import quorum_problem, signing_problem
from appliance.policy.schema import check_policy_schema


@dataclass(frozen=True)
class User:
    id: str
    roles: tuple[str, ...]
    key: UserKey
    passkeys: tuple[Passkey, ...] = ()  # WebAuthn credentials (appliance/policy/passkeys.py)

    def has(self, role: str) -> bool:
        return role in self.roles


@dataclass(frozen=True)
class ApprovalGroup:
    """``count`` distinct people, each holding one of ``roles``."""

    roles: tuple[str, ...]
    count: int


@dataclass(frozen=True)
class SigningRule:
    initiator_roles: tuple[str, ...] = ("initiator",)
    approvals: tuple[ApprovalGroup, ...] = (ApprovalGroup(("approver",), 1),)
    request_ttl_s: int = 86400
    approval_ttl_s: int = 86400
    max_signatures: int | None = None
    window_s: int = 3600
    derivation_paths: tuple[str, ...] = ("m/**",)
    allow_raw_digest: bool = False  # blind signing: off unless the policy allows it
    #: the transactions; text messages (``message``, ``eip191``) only where a rule names them
    payload_types: tuple[str, ...] = tuple(sorted(TRANSACTION_TYPES))
    hours_utc: tuple[int, int] | None = None
    #: transaction rules over decoded payloads (:class:`appliance.payloads.TxRules` fields
    #: except ``allow_raw_digest``/``allowed_payload_types``, which are the two above) and
    #: ``network``, the Bitcoin network a PSBT is read for when the request names none
    transactions: dict = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        # always the normalized, fully expanded table (so equal rules compare and hash alike)
        object.__setattr__(self, "transactions",
                           _parse_transactions(self.transactions, {}, "[signing]"))

    @property
    def approver_roles(self) -> frozenset[str]:
        return frozenset(r for g in self.approvals for r in g.roles)

    @property
    def network(self) -> str:
        return self.transactions.get("network", "mainnet")

    def tx_rules(self):
        """This rule's :class:`appliance.payloads.TxRules` (what every signer evaluates)."""
        d = {k: v for k, v in self.transactions.items() if k != "network"}
        return TxRules.from_dict({**d, "allow_raw_digest": self.allow_raw_digest,
                                  "allowed_payload_types": list(self.payload_types)})


@dataclass(frozen=True)
class QuorumRule:
    """``quorum`` distinct people holding one of ``roles`` (the requester counts)."""

    roles: tuple[str, ...] = ("admin",)
    quorum: int = 1
    request_ttl_s: int = 86400
    approval_ttl_s: int = 86400


_SIGNING_FIELDS = ("initiator_roles", "approvals", "request_ttl_s", "approval_ttl_s",
                   "max_signatures", "window_s", "derivation_paths", "allow_raw_digest",
                   "payload_types", "hours_utc", "transactions")
_TX_OWN = ("allow_raw_digest", "allowed_payload_types")  # set by the signing rule itself


def _parse_transactions(m: Any, base: Mapping, where: str) -> dict:
    """The normalized ``transactions`` table: ``base`` updated field by field with ``m``,
    checked by building the TxRules, amounts as decimal strings (wei exceed 2**53)."""
    want(isinstance(m, Mapping), f"{where}.transactions must be a table")
    bad = [k for k in m if k in _TX_OWN]
    want(not bad, f"{where}.transactions: {', '.join(bad)} is set in the signing rule itself "
         "(allow_raw_digest, payload_types)")
    merged = {**base, **m}
    net = merged.pop("network", None)
    if net is not None:
        want(net in BITCOIN_NETWORKS, f"{where}.transactions.network is one of "
             f"{', '.join(BITCOIN_NETWORKS)}")
    try:
        rules = TxRules.from_dict(merged)
    except (ApplianceError, TypeError, ValueError) as exc:
        raise PolicyError(f"{where}.transactions: {exc}") from None
    out = {k: v for k, v in rules.to_dict().items() if v is not None and k not in _TX_OWN}
    out["limits"] = {a: {k: str(v) for k, v in lim.items() if v is not None}
                     for a, lim in out["limits"].items()}
    out["max_fee"] = {a: str(v) for a, v in out["max_fee"].items()}
    if net is not None:
        out["network"] = net
    return out
_QUORUM_FIELDS = ("roles", "quorum", "request_ttl_s", "approval_ttl_s")


def _parse_signing(m: Mapping, base: SigningRule, where: str) -> SigningRule:
    want(isinstance(m, Mapping), f"{where} must be a table")
    only_fields(m, _SIGNING_FIELDS, where)
    kw: dict[str, Any] = {}
    if "initiator_roles" in m:
        kw["initiator_roles"] = check_roles(m["initiator_roles"], f"{where}.initiator_roles")
    if "approvals" in m:
        groups = []
        want(isinstance(m["approvals"], list), f"{where}.approvals must be a list")
        for g in m["approvals"]:
            want(isinstance(g, Mapping), f"{where}.approvals: each group is a table")
            only_fields(g, ("roles", "role", "count"), f"{where}.approvals")
            want(("roles" in g) != ("role" in g), f"{where}.approvals: give roles (or role)")
            roles = check_roles(g.get("roles", g.get("role")), f"{where}.approvals.roles")
            groups.append(ApprovalGroup(roles, check_int(g.get("count", 1), "approval count", 1, 100)))
        kw["approvals"] = tuple(sorted(groups, key=lambda g: (g.roles, g.count)))
    for name in ("request_ttl_s", "approval_ttl_s", "window_s"):
        if name in m:
            kw[name] = check_int(m[name], f"{where}.{name}", 1, MAX_TTL_S)
    if "max_signatures" in m:
        kw["max_signatures"] = (None if m["max_signatures"] is None
                                else check_int(m["max_signatures"], f"{where}.max_signatures",
                                          0, 10**9))
    if "derivation_paths" in m:
        dp = m["derivation_paths"]
        want(isinstance(dp, list) and all(isinstance(p, str) for p in dp),
             f"{where}.derivation_paths must be a list of patterns")
        for p in dp:
            parse_pattern(p)
        kw["derivation_paths"] = tuple(sorted(set(dp)))
    if "allow_raw_digest" in m:
        want(type(m["allow_raw_digest"]) is bool, f"{where}.allow_raw_digest is true or false")
        kw["allow_raw_digest"] = m["allow_raw_digest"]
    if "payload_types" in m:
        pt = m["payload_types"]
        want(isinstance(pt, list) and all(p in PAYLOAD_TYPES for p in pt),
             f"{where}.payload_types: a list of {', '.join(PAYLOAD_TYPES)}")
        kw["payload_types"] = tuple(sorted(set(pt)))
    if "hours_utc" in m:
        h = m["hours_utc"]
        if h is not None:
            want(isinstance(h, list) and len(h) == 2, f"{where}.hours_utc is [start, end]")
            h = (check_int(h[0], "hours_utc start", 0, 23), check_int(h[1], "hours_utc end", 1, 24))
            want(h[0] != h[1] % 24 or h == (0, 24), f"{where}.hours_utc is empty")
        kw["hours_utc"] = h
    if "transactions" in m:
        kw["transactions"] = _parse_transactions(m["transactions"], base.transactions, where)
    return replace(base, **kw)


def _parse_quorum(m: Mapping, where: str) -> QuorumRule:
    want(isinstance(m, Mapping), f"{where} must be a table")
    only_fields(m, _QUORUM_FIELDS, where)
    kw: dict[str, Any] = {}
    if "roles" in m:
        kw["roles"] = check_roles(m["roles"], f"{where}.roles")
    if "quorum" in m:
        kw["quorum"] = check_int(m["quorum"], f"{where}.quorum", 1, 100)
    for name in ("request_ttl_s", "approval_ttl_s"):
        if name in m:
            kw[name] = check_int(m[name], f"{where}.{name}", 1, MAX_TTL_S)
    return QuorumRule(**kw)


def _signing_dict(r: SigningRule) -> dict:
    return {
        "initiator_roles": sorted(r.initiator_roles),
        "approvals": [{"roles": sorted(g.roles), "count": g.count}
                      for g in sorted(r.approvals, key=lambda g: (sorted(g.roles), g.count))],
        "request_ttl_s": r.request_ttl_s, "approval_ttl_s": r.approval_ttl_s,
        "max_signatures": r.max_signatures, "window_s": r.window_s,
        "derivation_paths": sorted(r.derivation_paths), "allow_raw_digest": r.allow_raw_digest,
        "payload_types": sorted(r.payload_types),
        "hours_utc": list(r.hours_utc) if r.hours_utc is not None else None,
        "transactions": r.transactions,
    }


def _user_dict(u: User) -> dict:
    out = {"id": u.id, "roles": sorted(u.roles), "public_key": u.key.text}
    if u.passkeys:
        out["passkeys"] = [p.to_json() for p in u.passkeys]
    return out


def _quorum_dict(q: QuorumRule) -> dict:
    return {"roles": sorted(q.roles), "quorum": q.quorum, "request_ttl_s": q.request_ttl_s,
            "approval_ttl_s": q.approval_ttl_s}


@dataclass(frozen=True)
class Policy:
    cluster_id: str
    version: int
    users: tuple[User, ...]
    signing: SigningRule = SigningRule()
    key_rules: tuple[tuple[str, SigningRule], ...] = ()
    key_changes: QuorumRule = QuorumRule()
    policy_change: QuorumRule = QuorumRule()
    clock_skew_s: int = 30
    webauthn: WebAuthnSettings | None = None  # [webauthn]: rp_id and origins of passkeys
    _by_id: dict = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        want(isinstance(self.cluster_id, str) and ID.match(self.cluster_id) is not None,
             "cluster_id must be an id ([A-Za-z0-9._:@+-], up to 128)")
        check_int(self.version, "version", 0, 2**53 - 1)
        check_int(self.clock_skew_s, "clock_skew_s", 0, 3600)
        ids = [u.id for u in self.users]
        want(len(set(ids)) == len(ids), "user ids must be unique")
        creds = [p.id for u in self.users for p in u.passkeys]
        want(len(set(creds)) == len(creds), "a passkey id appears twice (each credential "
             "belongs to one user)")
        want(not creds or self.webauthn is not None,
             "users have passkeys: the policy needs a [webauthn] table (rp_id, origins)")
        object.__setattr__(self, "_by_id", {u.id: u for u in self.users})
        # a rule no set of the users can ever meet is refused here, naming the rule
        for problem in (
                quorum_problem("[key_changes]", self.key_changes, self.users, "its keys"),
                quorum_problem("[policy_change]", self.policy_change, self.users, "its policy"),
                signing_problem("[signing]", self.signing, self.users),
                *(signing_problem(f"[signing.keys.{k}]", r, self.users) for k, r in self.key_rules)):
            want(problem is None, str(problem))

    # -- look-ups ----------------------------------------------------------------------
    def user(self, user_id: str) -> User | None:
        return self._by_id.get(user_id)

    def rule_for(self, key_id: str | None) -> SigningRule:
        for k, r in self.key_rules:
            if k == key_id:
                return r
        return self.signing

    # -- canonical form and hash -------------------------------------------------------
    def tx_rules_for(self, key_id: str | None):
        """The transaction rules (:class:`appliance.payloads.TxRules`) of ``key_id``."""
        return self.rule_for(key_id).tx_rules()

    def canonical(self) -> dict:
        """The fully expanded policy as a JSON object (also a valid input of
        :meth:`from_mapping`). Passkeys and ``webauthn`` only where there are some (a policy
        without them keeps the hash it had before they existed)."""
        out = {
            "policy": {"format": POLICY_FORMAT, "cluster_id": self.cluster_id,
                       "version": self.version, "clock_skew_s": self.clock_skew_s},
            "users": [_user_dict(u) for u in sorted(self.users, key=lambda u: u.id)],
            "signing": {**_signing_dict(self.signing),
                        "keys": {k: _signing_dict(r) for k, r in self.key_rules}},
            "key_changes": _quorum_dict(self.key_changes),
            "policy_change": _quorum_dict(self.policy_change),
        }
        if self.webauthn is not None:
            out["webauthn"] = self.webauthn.to_json()
        return out

    def canonical_bytes(self) -> bytes:
        return canonical_json(self.canonical())

    @property
    def hash(self) -> str:
        """SHA-256 (hex) of :meth:`canonical_bytes`: what nodes put in every session."""
        h = self.__dict__.get("_hash")
        if h is None:
            h = sha256_hex(self.canonical_bytes())
            object.__setattr__(self, "_hash", h)
        return h

    # -- parsing -----------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, m: Mapping) -> Policy:
        want(isinstance(m, Mapping), "a policy is a table")
        check_policy_schema(m)  # unknown keys and wrong types, naming the table and the key
        only_fields(m, ("policy", "users", "signing", "key_changes", "policy_change",
                  "cluster", "nodes", "webauthn"), "the policy file")
        p = m.get("policy", {})
        want(isinstance(p, Mapping), "[policy] must be a table")
        only_fields(p, ("format", "cluster_id", "version", "clock_skew_s"), "[policy]")
        want(p.get("format", POLICY_FORMAT) == POLICY_FORMAT,
             f"unsupported policy format {p.get('format')!r}")
        cluster_id = p.get("cluster_id")
        other = m.get("cluster", {}).get("id") if isinstance(m.get("cluster"), Mapping) else None
        if cluster_id is None:
            cluster_id = other
        want(cluster_id is not None, "[policy].cluster_id is missing")
        want(other is None or other == cluster_id, "[policy].cluster_id differs from [cluster].id")
        users = []
        raw_users = m.get("users", [])
        want(isinstance(raw_users, list), "[[users]] must be an array of tables")
        for u in raw_users:
            want(isinstance(u, Mapping), "each [[users]] entry is a table")
            only_fields(u, ("id", "roles", "public_key", "passkeys"), "[[users]]")
            uid = u.get("id")
            want(isinstance(uid, str) and ID.match(uid) is not None, f"bad user id {uid!r}")
            roles = u.get("roles", [])
            want(isinstance(roles, list) and all(isinstance(r, str) and ROLE.match(r)
                                                  for r in roles), f"user {uid}: bad roles")
            want("public_key" in u, f"user {uid}: public_key is missing")
            pks = u.get("passkeys", [])
            want(isinstance(pks, list) and len(pks) <= MAX_PASSKEYS,
                 f"user {uid}: passkeys is a list of at most {MAX_PASSKEYS}")
            passkeys = tuple(sorted((Passkey.parse(pk, f"user {uid}") for pk in pks),
                                    key=lambda pk: pk.id))
            users.append(User(uid, tuple(sorted(set(roles))), UserKey.parse(u["public_key"]),
                              passkeys))
        want(isinstance(m.get("signing", {}), Mapping), "[signing] must be a table")
        signing_m = dict(m.get("signing", {}))
        keys_m = signing_m.pop("keys", {}) or {}
        signing = _parse_signing(signing_m, SigningRule(), "[signing]")
        want(isinstance(keys_m, Mapping), "[signing.keys] must be a table")
        key_rules = []
        for kid, km in sorted(keys_m.items()):
            want(ID.match(kid) is not None, f"bad key id {kid!r}")
            key_rules.append((kid, _parse_signing(km, signing, f"[signing.keys.{kid}]")))
        return cls(
            cluster_id=cluster_id, version=p.get("version", 1),
            users=tuple(sorted(users, key=lambda u: u.id)), signing=signing,
            key_rules=tuple(key_rules),
            key_changes=_parse_quorum(m.get("key_changes", {}), "[key_changes]"),
            policy_change=_parse_quorum(m.get("policy_change", {}), "[policy_change]"),
            clock_skew_s=p.get("clock_skew_s", 30),
            webauthn=WebAuthnSettings.parse(m["webauthn"]) if "webauthn" in m else None,
        )

    @classmethod
    def from_toml(cls, text: str) -> Policy:
        try:
            return cls.from_mapping(tomllib.loads(text))
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError(f"policy is not valid TOML: {exc}") from None

    @classmethod
    def load(cls, path: str | Path) -> Policy:
        """The policy file at ``path``; a :class:`PolicyError` names the file."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise PolicyError(f"cannot read policy {path}: {exc.strerror}") from None
        try:
            return cls.from_toml(text)
        except PolicyError as exc:
            raise PolicyError(f"{path}: {exc}") from None

    @classmethod
    def from_json(cls, data: bytes | str | Mapping) -> Policy:
        if not isinstance(data, Mapping):
            data = parse_statement_json(data)
        return cls.from_mapping(data)

    def to_toml(self) -> str:
        """A TOML file whose policy has the same hash (tomli-w; unset values left out)."""
        c = self.canonical()

        def drop_none(v: Any) -> Any:
            return {k: drop_none(x) for k, x in v.items() if x is not None} \
                if isinstance(v, dict) else v

        return tomli_w.dumps(drop_none(c), multiline_strings=False)

    def summary(self) -> dict:
        """What a client needs to make statements (e.g. for ``GET /v1/policy``)."""
        return {"cluster_id": self.cluster_id, "policy_hash": self.hash,
                "version": self.version, "policy": self.canonical()}


DEFAULT_ROLES = ("initiator", "approver", "admin", "auditor")


def default_policy(cluster_id: str, user_keys: Mapping[str, str | bytes], *,
                   roles: Mapping[str, Sequence[str]] | None = None,
                   request_ttl_s: int = 86400, approval_ttl_s: int = 86400) -> Policy:
    """LocalCluster's default: one user per role (user id = role name unless ``roles``
    maps ids to roles); signing needs the initiator and one approver; key changes and policy
    changes one admin; any derivation path; raw digests and every payload type (text
    messages too) allowed;
    no rate limit, no hours. The auditor role only reads the audit log."""
    users = []
    for uid, key in user_keys.items():
        r = tuple(roles[uid]) if roles is not None else (uid,)
        users.append(User(uid, tuple(sorted(r)), UserKey.parse(key)))
    return Policy(
        cluster_id=cluster_id, version=1, users=tuple(sorted(users, key=lambda u: u.id)),
        signing=SigningRule(request_ttl_s=request_ttl_s, approval_ttl_s=approval_ttl_s,
                            allow_raw_digest=True, payload_types=tuple(sorted(PAYLOAD_TYPES))),
        key_changes=QuorumRule(("admin",), 1, request_ttl_s, approval_ttl_s),
        policy_change=QuorumRule(("admin",), 1, request_ttl_s, approval_ttl_s),
    )
