"""The typed results of decoding: what to sign (digest, key, tweak), what it means (summary),
and the facts policy rules need.

Everything here is computed by the node itself from the payload bytes and its own copy of the
key's public data (root public key, chain code). Nothing is taken from a coordinator.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from nacl.bindings import crypto_core_ed25519_is_valid_point

from appliance.errors import EncodingError
from appliance.payloads.errors import PayloadError
from appliance.tss import bip32
from appliance.tss.frost import taproot as bip340
from appliance.tss.group import Point
# PAYLOAD_TYPES (what a request may carry) and TRANSACTION_TYPES (a rule's default): the
# statements' grammar, shared with the client library (one list)
# and the key schemes (DESIGN.md "Schemes"): what a KeyContext's key signs with
from appliance_client.grammar import BIP340, ECDSA, ED25519, PAYLOAD_TYPES, SCHEMES, TRANSACTION_TYPES

#: payload_type of a DecodedPayload made from a bare 32-byte digest (no payload)
DIGEST = "digest"



@dataclass(frozen=True)
class SignerKey:
    """One public key of ours that signs: the root (path ``m``, tweak 0) or a BIP32 child.

    A signer node signs for it with ``tweak`` (``SignParty(tweak=...)``)."""

    public_key: bytes  # 33-byte compressed SEC1
    tweak: int
    path: str  # "m" or "m/0/1"

    @property
    def point(self) -> Point:
        return Point.from_bytes(self.public_key)


def _key_bytes(public_key: bytes | Point | str) -> bytes:
    if isinstance(public_key, Point):
        return public_key.to_bytes()
    if isinstance(public_key, str):
        try:
            public_key = bytes.fromhex(public_key)
        except ValueError as exc:
            raise PayloadError("bad_key", "public key is not hex") from exc
    try:
        return Point.from_bytes(bytes(public_key)).to_bytes()
    except (EncodingError, TypeError) as exc:
        raise PayloadError("bad_key", f"not a compressed secp256k1 public key: {exc}") from exc


@dataclass(frozen=True)
class KeyContext:
    """Which key is ours: the key's root public key and chain code (from the node's own
    store), the derivation path the request names, if any, and the key's ``scheme``.

    ``public_key``: 33-byte compressed SEC1 for ``ecdsa-secp256k1``; 32 bytes for
    ``schnorr-bip340`` (the x-only internal key P; a compressed key is reduced to its x) and
    ``ed25519`` (the RFC 8032 key). Derivation is ECDSA-only here (``not_supported_for_scheme``).

    ``KeyContext.of(share, "m/0/1")`` takes them from a KeyShare (or anything with
    ``public_key``, ``chain_code`` and, for a Schnorr key, ``scheme``)."""

    public_key: bytes
    chain_code: bytes | None = None
    derivation_path: str | None = None
    scheme: str = ECDSA

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise PayloadError("bad_key", f"key scheme must be one of {', '.join(SCHEMES)}")
        object.__setattr__(self, "public_key", _scheme_key_bytes(self.scheme, self.public_key))
        if self.chain_code is not None:
            if not isinstance(self.chain_code, (bytes, bytearray)) or len(self.chain_code) != 32:
                raise PayloadError("bad_key", "chain code must be 32 bytes")
            object.__setattr__(self, "chain_code", bytes(self.chain_code))
        if self.derivation_path is not None and not isinstance(self.derivation_path, str):
            raise PayloadError("bad_derivation_path", "derivation path must be a string")

    @classmethod
    def of(cls, key: Any, derivation_path: str | None = None) -> KeyContext:
        return cls(key.public_key, getattr(key, "chain_code", None), derivation_path,
                   getattr(key, "scheme", None) or ECDSA)

    @property
    def root(self) -> SignerKey:
        return SignerKey(self.public_key, 0, "m")

    @property
    def output_key(self) -> bytes:
        """``schnorr-bip340``: the x-only key of the key-path-only P2TR output
        ``output_key(P, b"")`` (never P itself: see appliance/tss/frost/taproot.py)."""
        if self.scheme != BIP340:
            raise PayloadError("not_supported_for_scheme", f"a {self.scheme} key has no taproot output key")
        return taproot_output_key(self.public_key, b"")

    @property
    def fingerprint(self) -> bytes:
        """BIP32 key fingerprint of the root: what PSBT derivation records name as master."""
        return bip32.hash160(self.public_key)[:4]

    def derive(self, path: str | None) -> SignerKey:
        """The child at a non-hardened ``path`` (``None``/``"m"``: the root)."""
        if path in (None, "", "m", "M"):
            return self.root
        if self.scheme != ECDSA:
            raise PayloadError("not_supported_for_scheme",
                               f"derivation paths are not supported for {self.scheme} keys yet")
        if self.chain_code is None:
            raise PayloadError("bad_derivation_path", "this key has no chain code: no derivation")
        try:
            d = bip32.derive(Point.from_bytes(self.public_key), self.chain_code, path)
        except bip32.DerivationError as exc:
            raise PayloadError("bad_derivation_path", str(exc)) from exc
        return SignerKey(d.public_key.to_bytes(), d.tweak, _normal_path(path))

    def derive_indices(self, indices: list[int]) -> SignerKey | None:
        """The child at these indices, or None when one is hardened (not ours to derive)."""
        if any(i < 0 or i >= bip32.HARDENED for i in indices) or len(indices) > 255 \
                or self.scheme != ECDSA:
            return None
        if not indices:
            return self.root
        try:
            return self.derive("m/" + "/".join(str(i) for i in indices))
        except PayloadError:
            return None

    @cached_property
    def signer(self) -> SignerKey:
        """The key the request names: the derived child for its path, else the root."""
        return self.derive(self.derivation_path)


def _scheme_key_bytes(scheme: str, public_key: Any) -> bytes:
    if scheme == ECDSA:
        return _key_bytes(public_key)
    if isinstance(public_key, Point):
        public_key = public_key.to_bytes()
    if isinstance(public_key, str):
        try:
            public_key = bytes.fromhex(public_key)
        except ValueError as exc:
            raise PayloadError("bad_key", "public key is not hex") from exc
    if not isinstance(public_key, (bytes, bytearray)):
        raise PayloadError("bad_key", "public key must be bytes or hex")
    public_key = bytes(public_key)
    if scheme == BIP340:
        if len(public_key) == 33:
            public_key = _key_bytes(public_key)[1:]
        if len(public_key) != 32:
            raise PayloadError("bad_key", "a schnorr-bip340 key is 32 bytes (x-only)")
        try:
            bip340.lift_x(public_key)
        except EncodingError as exc:
            raise PayloadError("bad_key", "not an x-only secp256k1 public key") from exc
        return public_key
    if len(public_key) != 32 or not crypto_core_ed25519_is_valid_point(public_key):
        raise PayloadError("bad_key", "not a 32-byte Ed25519 public key of the prime-order subgroup")
    return public_key


def taproot_output_key(internal_key: bytes, merkle_root: bytes = b"") -> bytes:
    """x-only BIP341 output key ``output_key(lift_x(internal_key), merkle_root)``."""
    try:
        return bip340.output_key(bip340.lift_x(internal_key), merkle_root).to_bytes()[1:]
    except EncodingError as exc:
        raise PayloadError("bad_key", f"no taproot output key: {exc}") from exc


def _normal_path(path: str) -> str:
    return "m" + "".join(f"/{i}" for i in bip32.parse_path(path))


@dataclass(frozen=True)
class SigningItem:
    """One signature to produce, with the key's ``scheme``:

    - ``ecdsa-secp256k1``: over ``digest`` (32 bytes, computed here), by ``public_key`` =
      root + ``tweak``·G.
    - ``schnorr-bip340``: a BIP340 signature over ``digest`` (a BIP341 sighash) by the
      output key ``output_key(P, merkle_root)`` of ``public_key`` = x-only P: the node signs
      with FROST ``merkle_root=item.merkle_root`` (``b""``: key-path-only output).
      ``sighash_type``: 0 (SIGHASH_DEFAULT, 64-byte signature) or 1 (ALL, 65 bytes).
    - ``ed25519``: an RFC 8032 signature over ``message`` (the bytes themselves: Ed25519
      hashes internally); ``digest`` is then SHA-256(message), the identifier coordinators
      claim (``check_claimed_digests``) and the audit log records.
    """

    digest: bytes
    public_key: bytes
    tweak: int
    path: str
    #: PSBT input index (None for Ethereum, EIP-712 and raw digests)
    input_index: int | None = None
    scheme: str = ECDSA
    merkle_root: bytes | None = None
    sighash_type: int | None = None
    message: bytes | None = field(default=None, repr=False)

    @property
    def signed_bytes(self) -> bytes:
        """What the signing protocol signs: the message for Ed25519, else the digest."""
        return self.message if self.message is not None else self.digest

    def to_dict(self) -> dict:
        out = {"digest": self.digest.hex(), "public_key": self.public_key.hex(),
               "path": self.path, "input_index": self.input_index}
        if self.scheme != ECDSA:  # ECDSA items keep their earlier shape
            out["scheme"] = self.scheme
        if self.merkle_root is not None:
            out["merkle_root"] = self.merkle_root.hex()
            out["output_key"] = taproot_output_key(self.public_key, self.merkle_root).hex()
        if self.sighash_type is not None:
            out["sighash_type"] = self.sighash_type
        return out


@dataclass(frozen=True)
class Transfer:
    """Value leaving (or authorised to leave) the key.

    ``asset``: ``"BTC"`` (satoshi), ``"ETH"`` (wei, the chain's native asset), ``"ERC20:<EIP-55
    contract address>"`` (the token's base units), or None when no asset moves (a contract
    call without value, typed data that is not a permit). ``destination`` is an address
    (EIP-55 for Ethereum, the network's address for Bitcoin, ``script:<hex>`` for a script
    with no address) or None for an Ethereum contract creation. ``kind``: ``transfer``,
    ``approval`` (ERC-20 approve / EIP-2612 permit: the spender may take ``amount``),
    ``contract_call``, ``contract_creation``, ``signature`` (typed data for a contract)."""

    asset: str | None
    amount: int
    destination: str | None
    kind: str = "transfer"

    def to_dict(self) -> dict:
        return {"asset": self.asset, "amount": str(self.amount), "destination": self.destination,
                "kind": self.kind}


@dataclass(frozen=True)
class TxFacts:
    """What policy rules look at, computed from the payload by this node."""

    payload_type: str
    chain: str | None = None  # "bitcoin" | "ethereum" | "solana" | None for a raw digest
    network: str | None = None  # bitcoin: mainnet/testnet/signet/regtest; ethereum: a name or None
    chain_id: int | None = None
    transfers: tuple[Transfer, ...] = ()
    fee: int | None = None  # the most this transaction can pay (BTC: exact; ETH: gas x max price)
    fee_asset: str | None = None
    contract: str | None = None
    method: str | None = None
    #: an Ethereum call whose method we cannot decode (value and effects unknown to us)
    unknown_call: bool = False

    @property
    def destinations(self) -> tuple[str | None, ...]:
        out: list[str | None] = []
        for t in self.transfers:
            if t.destination not in out:
                out.append(t.destination)
        return tuple(out)

    @property
    def amounts(self) -> dict[str, int]:
        """Total per asset across transfers (what per-transaction and window limits count)."""
        out: dict[str, int] = {}
        for t in self.transfers:
            if t.asset is not None:
                out[t.asset] = out.get(t.asset, 0) + t.amount
        return out

    def to_dict(self) -> dict:
        return {
            "payload_type": self.payload_type, "chain": self.chain, "network": self.network,
            "chain_id": self.chain_id, "transfers": [t.to_dict() for t in self.transfers],
            "destinations": list(self.destinations),
            "amounts": {k: str(v) for k, v in self.amounts.items()},
            "fee": None if self.fee is None else str(self.fee), "fee_asset": self.fee_asset,
            "contract": self.contract, "method": self.method, "unknown_call": self.unknown_call,
        }


@dataclass(frozen=True)
class DecodedPayload:
    """A payload as this node understands it.

    ``items``: the signatures to produce, in order (``digests`` for short). ``summary``: a
    JSON-ready description for approvers and the audit log. ``facts``: for policy rules.
    ``canonical``: the payload as decoded (bytes for psbt/eth_tx, the dict for eip712), kept
    so the assembler works from the same bytes the digests came from."""

    payload_type: str
    items: tuple[SigningItem, ...]
    summary: Mapping[str, Any]
    facts: TxFacts
    canonical: Any = field(repr=False, default=None)
    network: str | None = None

    @property
    def digests(self) -> list[bytes]:
        return [i.digest for i in self.items]

    @property
    def tweaks(self) -> list[int]:
        return [i.tweak for i in self.items]

    def to_dict(self) -> dict:
        """JSON-ready: for the sign-request record, GET /v1/sign-requests/{id} and the audit log."""
        return {"payload_type": self.payload_type, "summary": dict(self.summary),
                "facts": self.facts.to_dict(), "items": [i.to_dict() for i in self.items]}


__all__ = [
    "BIP340",
    "DIGEST",
    "ECDSA",
    "ED25519",
    "PAYLOAD_TYPES",
    "SCHEMES",
    "TRANSACTION_TYPES",
    "DecodedPayload",
    "KeyContext",
    "SignerKey",
    "SigningItem",
    "Transfer",
    "TxFacts",
    "taproot_output_key",
]
