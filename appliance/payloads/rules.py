"""Transaction rules of a key's policy, evaluated over the facts a node decoded itself.

``appliance/policy/`` (approvals, roles) calls :func:`evaluate_tx_rules` with the key's
:class:`TxRules`; this module knows nothing about users or quorums.

Rules (all optional; an unset list means "any"):

- ``allow_raw_digest``: a bare 32-byte digest may be signed (blind signing). **False by
  default** (production); :meth:`TxRules.permissive` (LocalCluster's default) allows it.
- ``allowed_payload_types``: e.g. ``["psbt"]`` for a Bitcoin-only key.
- ``allowed_destinations`` / ``denied_destinations``: addresses (EIP-55 or lower-case hex
  for Ethereum, the network's address for Bitcoin, base58 for Solana: a transfer to an
  account from an address lookup table reads ``unresolved:<table>/<index>``, on no
  allow-list). Change back to our own key is not a
  destination. An Ethereum contract creation, or typed data naming no contract, has no
  destination and fails an allow-list.
- ``allowed_assets``: ``BTC``, ``ETH``, ``ERC20:<address>``, ``SOL``, ``SPL:<mint>`` (base58;
  ``SPL:unknown`` is a token Transfer that does not name its mint).
- ``limits``: per asset, ``per_transaction`` and ``per_window`` (smallest units: sat, wei, lamports,
  token base units). The caller passes what was already signed in the current window
  (``window_usage``; the window is ``window_seconds`` long, default 24 h) and, after
  signing, adds ``facts.amounts``.
- ``allowed_chain_ids`` (Ethereum transactions and typed data; typed data without a chain id
  fails it) and ``allowed_networks`` (Bitcoin: mainnet, testnet, signet, regtest).
- ``max_fee``: per fee asset (``BTC`` in sat, ``ETH`` in wei: gas limit x max fee per gas).
  A PSBT whose fee cannot be computed fails it (``fee_unknown``).
- ``allow_contract_calls``: Ethereum calls whose method we cannot decode, Solana instructions
  of programs (or System/Token instructions) we do not decode (default True).

Reason codes: ``raw_digest_forbidden``, ``payload_type_not_allowed``, ``chain_not_allowed``,
``destination_denied``, ``destination_not_allowed``, ``asset_not_allowed``,
``amount_over_limit``, ``window_limit_exceeded``, ``fee_too_high``, ``fee_unknown``,
``contract_call_not_allowed``; ``ok`` when allowed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import base58

from appliance.errors import ApplianceError
from appliance.payloads.addresses import normalize_address, normalize_eth_address
from appliance.payloads.errors import PayloadError
from appliance.payloads.types import DIGEST, PAYLOAD_TYPES, DecodedPayload, TxFacts

BITCOIN_NETWORKS = ("mainnet", "testnet", "signet", "regtest")


class RulesError(ApplianceError, ValueError):
    """A policy's transaction rules are malformed (a configuration error)."""

    code = "bad_policy"


@dataclass(frozen=True)
class AssetLimit:
    per_transaction: int | None = None
    per_window: int | None = None


def _asset(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise RulesError("an asset is a non-empty string")
    if name.upper().startswith("SPL:"):  # base58 is case-sensitive: the mint as written
        mint = name[4:]
        if mint.lower() == "unknown":
            return "SPL:unknown"
        try:
            ok = len(base58.b58decode(mint)) == 32
        except ValueError:
            ok = False
        if not ok:
            raise RulesError(f"asset {name!r}: an SPL mint is a base58 32-byte address")
        return "SPL:" + mint
    if name.upper().startswith("ERC20:"):
        try:
            return "ERC20:" + normalize_eth_address(name[6:], "token address")
        except PayloadError as exc:
            raise RulesError(f"asset {name!r}: {exc}") from exc
    return name.upper()


def _amount(v: Any, what: str) -> int | None:
    if v is None:
        return None
    if isinstance(v, str) and v.isdigit():
        v = int(v)
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise RulesError(f"{what} must be a non-negative integer (smallest units)")
    return v


def _addresses(values: Iterable[Any] | None, what: str) -> frozenset[str] | None:
    if values is None:
        return None
    if isinstance(values, str):
        raise RulesError(f"{what} is a list of addresses")
    try:
        return frozenset(normalize_address(v) for v in values)
    except PayloadError as exc:
        raise RulesError(f"{what}: {exc}") from exc


@dataclass(frozen=True)
class TxRules:
    allow_raw_digest: bool = False
    allowed_payload_types: frozenset[str] | None = None
    allowed_destinations: frozenset[str] | None = None
    denied_destinations: frozenset[str] = frozenset()
    allowed_assets: frozenset[str] | None = None
    limits: Mapping[str, AssetLimit] = field(default_factory=dict)
    window_seconds: int = 86400
    allowed_chain_ids: frozenset[int] | None = None
    allowed_networks: frozenset[str] | None = None
    max_fee: Mapping[str, int] = field(default_factory=dict)
    allow_contract_calls: bool = True

    def __post_init__(self) -> None:
        s = object.__setattr__
        s(self, "allowed_destinations", _addresses(self.allowed_destinations, "allowed_destinations"))
        s(self, "denied_destinations", _addresses(self.denied_destinations, "denied_destinations") or frozenset())
        if self.allowed_payload_types is not None:
            types = frozenset(self.allowed_payload_types)
            if not types <= set(PAYLOAD_TYPES):
                raise RulesError(f"payload types are {', '.join(PAYLOAD_TYPES)}")
            s(self, "allowed_payload_types", types)
        if self.allowed_assets is not None:
            s(self, "allowed_assets", frozenset(_asset(a) for a in self.allowed_assets))
        limits = {}
        for asset, lim in dict(self.limits).items():
            if isinstance(lim, Mapping):
                unknown = set(lim) - {"per_transaction", "per_window"}
                if unknown:
                    raise RulesError(f"unknown limit fields {sorted(unknown)}")
                lim = AssetLimit(lim.get("per_transaction"), lim.get("per_window"))
            if not isinstance(lim, AssetLimit):
                raise RulesError("a limit is {per_transaction, per_window}")
            limits[_asset(asset)] = AssetLimit(_amount(lim.per_transaction, "per_transaction"),
                                               _amount(lim.per_window, "per_window"))
        s(self, "limits", MappingProxyType(limits))
        s(self, "max_fee", MappingProxyType({_asset(a): _amount(v, "max_fee")
                                             for a, v in dict(self.max_fee).items()}))
        if self.allowed_chain_ids is not None:
            ids = frozenset(self.allowed_chain_ids)
            if not all(isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in ids):
                raise RulesError("chain ids are positive integers")
            s(self, "allowed_chain_ids", ids)
        if self.allowed_networks is not None:
            nets = frozenset(self.allowed_networks)
            if not nets <= set(BITCOIN_NETWORKS):
                raise RulesError(f"networks are {', '.join(BITCOIN_NETWORKS)}")
            s(self, "allowed_networks", nets)
        if not isinstance(self.window_seconds, int) or self.window_seconds <= 0:
            raise RulesError("window_seconds must be a positive integer")
        for flag in ("allow_raw_digest", "allow_contract_calls"):
            if not isinstance(getattr(self, flag), bool):
                raise RulesError(f"{flag} must be true or false")

    @classmethod
    def permissive(cls) -> TxRules:
        """No transaction rule, raw digests allowed (LocalCluster's default policy)."""
        return cls(allow_raw_digest=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> TxRules:
        """From a policy file's section (JSON/TOML); unknown keys are an error."""
        if d is None:
            return cls()
        if not isinstance(d, Mapping):
            raise RulesError("transaction rules are an object")
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise RulesError(f"unknown transaction rule(s): {', '.join(sorted(unknown))}")
        kw = dict(d)
        for k in ("allowed_payload_types", "allowed_assets", "allowed_chain_ids", "allowed_networks"):
            if kw.get(k) is not None:
                if isinstance(kw[k], str) or not isinstance(kw[k], Iterable):
                    raise RulesError(f"{k} is a list")
                kw[k] = frozenset(kw[k])
        return cls(**kw)

    def to_dict(self) -> dict:
        def lst(v):
            return None if v is None else sorted(v)

        return {
            "allow_raw_digest": self.allow_raw_digest,
            "allowed_payload_types": lst(self.allowed_payload_types),
            "allowed_destinations": lst(self.allowed_destinations),
            "denied_destinations": sorted(self.denied_destinations),
            "allowed_assets": lst(self.allowed_assets),
            "limits": {a: {"per_transaction": lim.per_transaction, "per_window": lim.per_window}
                       for a, lim in self.limits.items()},
            "window_seconds": self.window_seconds,
            "allowed_chain_ids": lst(self.allowed_chain_ids),
            "allowed_networks": lst(self.allowed_networks),
            "max_fee": dict(self.max_fee),
            "allow_contract_calls": self.allow_contract_calls,
        }


@dataclass(frozen=True)
class Violation:
    code: str
    message: str

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True)
class TxDecision:
    """``allowed`` and, when refused, the first violation's ``code`` and ``message`` (every
    violation is listed for the audit log)."""

    allowed: bool
    code: str
    message: str
    violations: tuple[Violation, ...] = ()

    def to_dict(self) -> dict:
        return {"allowed": self.allowed, "code": self.code, "message": self.message,
                "violations": [v.to_dict() for v in self.violations]}


def policy_facts(decoded: DecodedPayload) -> TxFacts:
    """The facts policy rules need (destinations, per-asset amounts, chain id, network, fee)."""
    return decoded.facts


def evaluate_tx_rules(subject: DecodedPayload | TxFacts, rules: TxRules,
                      window_usage: Mapping[str, int] | None = None) -> TxDecision:
    """Check ``subject`` against ``rules``. ``window_usage``: per asset, what this key already
    signed in the current window (not counting this request)."""
    facts = subject.facts if isinstance(subject, DecodedPayload) else subject
    if not isinstance(facts, TxFacts) or not isinstance(rules, TxRules):
        raise TypeError("evaluate_tx_rules(DecodedPayload | TxFacts, TxRules)")
    usage = {_asset(a): int(v) for a, v in (window_usage or {}).items()}
    out: list[Violation] = []

    def refuse(code: str, message: str) -> None:
        out.append(Violation(code, message))

    if facts.payload_type == DIGEST:
        if not rules.allow_raw_digest:
            refuse("raw_digest_forbidden", "this key's policy does not allow signing raw digests")
        return _decision(out)

    if rules.allowed_payload_types is not None and facts.payload_type not in rules.allowed_payload_types:
        refuse("payload_type_not_allowed", f"{facts.payload_type} payloads are not allowed for this key")

    if facts.chain == "ethereum" and rules.allowed_chain_ids is not None \
            and facts.chain_id not in rules.allowed_chain_ids:
        refuse("chain_not_allowed", f"chain id {facts.chain_id} is not allowed")
    if facts.chain == "bitcoin" and rules.allowed_networks is not None \
            and facts.network not in rules.allowed_networks:
        refuse("chain_not_allowed", f"Bitcoin network {facts.network} is not allowed")

    for dest in facts.destinations:
        if dest is not None and dest in rules.denied_destinations:
            refuse("destination_denied", f"{dest} is on the deny-list")
        elif rules.allowed_destinations is not None and dest not in rules.allowed_destinations:
            what = dest if dest is not None else "a contract creation / typed data without a contract"
            refuse("destination_not_allowed", f"{what} is not on the allow-list")

    amounts = facts.amounts
    for asset, amount in amounts.items():
        if rules.allowed_assets is not None and asset not in rules.allowed_assets:
            refuse("asset_not_allowed", f"{asset} is not an allowed asset")
        lim = rules.limits.get(asset)
        if lim is None:
            continue
        if lim.per_transaction is not None and amount > lim.per_transaction:
            refuse("amount_over_limit", f"{amount} {asset} exceeds the per-transaction limit {lim.per_transaction}")
        if lim.per_window is not None and usage.get(asset, 0) + amount > lim.per_window:
            refuse("window_limit_exceeded",
                   f"{amount} {asset} on top of {usage.get(asset, 0)} already signed exceeds the "
                   f"limit {lim.per_window} per {rules.window_seconds} s")

    if facts.fee_asset is not None and facts.fee_asset in rules.max_fee:
        cap = rules.max_fee[facts.fee_asset]
        if facts.fee is None:
            refuse("fee_unknown", "the fee cannot be computed (an input lacks its amount)")
        elif facts.fee > cap:
            refuse("fee_too_high", f"fee {facts.fee} {facts.fee_asset} exceeds the maximum {cap}")

    if facts.unknown_call and not rules.allow_contract_calls:
        refuse("contract_call_not_allowed", f"call to {facts.contract} with an undecoded method")

    return _decision(out)


def _decision(violations: list[Violation]) -> TxDecision:
    if not violations:
        return TxDecision(True, "ok", "transaction rules met")
    return TxDecision(False, violations[0].code, violations[0].message, tuple(violations))


__all__ = [
    "AssetLimit",
    "RulesError",
    "TxDecision",
    "TxRules",
    "Violation",
    "evaluate_tx_rules",
    "policy_facts",
]
