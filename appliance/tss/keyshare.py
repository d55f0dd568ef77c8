"""What a party keeps after keygen and aux-info: its share and everyone's public data."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache

from gmpy2 import mpz

from appliance.errors import EncodingError
from appliance.tss import wire
from appliance.tss.group import Q, Point, lagrange_coefficient
from appliance.tss.paillier import (
    PaillierPublicKey,
    PaillierSecretKey,
    RingPedersenParams,
    RingPedersenSecret,
)
from appliance.tss.transcript import Transcript


@dataclass(frozen=True)
class PartyAux:
    """A party's public auxiliary data: Paillier modulus and ring-Pedersen parameters."""

    N: int
    Nhat: int
    s: int
    t: int

    @property
    def paillier(self) -> PaillierPublicKey:
        return _paillier_public(self.N)

    @property
    def ring_pedersen(self) -> RingPedersenParams:
        return _ring_pedersen(self.Nhat, self.s, self.t)


@lru_cache(maxsize=256)
def _paillier_public(N: int) -> PaillierPublicKey:
    """One object per modulus, so that its precomputations are shared across sessions."""
    return PaillierPublicKey(mpz(N))


@lru_cache(maxsize=256)
def _ring_pedersen(Nhat: int, s: int, t: int) -> RingPedersenParams:
    return RingPedersenParams(mpz(Nhat), mpz(s), mpz(t))


@dataclass(frozen=True)
class AuxSecret:
    """A party's own Paillier and ring-Pedersen secrets."""

    p: int
    q: int
    P: int
    Q: int
    lam: int

    def __repr__(self) -> str:
        return "AuxSecret(<hidden>)"

    def paillier(self) -> PaillierSecretKey:
        """The Paillier key, one object per ``AuxSecret``: its CRT constants are computed once
        per key, not once per session."""
        return self._paillier

    @cached_property
    def _paillier(self) -> PaillierSecretKey:
        return PaillierSecretKey(mpz(self.p), mpz(self.q))

    def ring_pedersen(self, public: PartyAux) -> RingPedersenSecret:
        """The ring-Pedersen secret for ``public`` (one object per parameter set, cached)."""
        params = public.ring_pedersen
        cached = self.__dict__.get("_rp")
        if cached is None or cached.params != params:
            cached = RingPedersenSecret(mpz(self.P), mpz(self.Q), mpz(self.lam), params)
            self.__dict__["_rp"] = cached
        return cached


@dataclass(frozen=True)
class PooledAux:
    """One party's aux-info made ahead of any key (a key-independent aux session of the
    ordered committee ``parties``): everyone's public Paillier and ring-Pedersen data, this
    party's secrets and the session's joint ``rid``. :meth:`bind` joins it to a fresh key share
    of the same committee (what LF cggmp24 does with ``aux_info_gen`` + ``KeyShare::from_parts``)."""

    index: int
    parties: list[int]
    bits: int
    aux: dict[int, PartyAux]
    secret: AuxSecret
    rid: bytes

    def __repr__(self) -> str:
        return f"PooledAux(index={self.index}, parties={self.parties}, bits={self.bits})"

    def fingerprint(self) -> bytes:
        """A hash of the aux-info's public data (what every party of the committee holds)."""
        tr = Transcript(b"pooled-aux-public").append("bits", self.bits).append("rid", self.rid)
        for j in self.parties:
            a = self.aux[j]
            tr.append("party", j).append_many(N=a.N, Nhat=a.Nhat, s=a.s, t=a.t)
        return tr.digest()

    def bind(self, share: "KeyShare") -> "KeyShare":
        """``share`` (fresh from a DKG of this committee, no aux yet) with this aux-info; the
        key's rid becomes rid_key XOR rid_aux, so every later proof is bound to both."""
        if share.index != self.index or share.participants != sorted(self.parties) or share.has_aux:
            raise EncodingError("the aux-info is not for this key share's committee")
        rid = bytes(a ^ b for a, b in zip(share.rid, self.rid))
        return replace(share, rid=rid).with_aux(dict(self.aux), self.secret, self.bits)

    def to_bytes(self) -> bytes:
        return wire.encode(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> "PooledAux":
        out = wire.decode(data, cls)
        own = out.aux.get(out.index)
        if own is None or sorted(out.aux) != sorted(out.parties) or own.N != out.secret.p * out.secret.q:
            raise EncodingError("pooled aux-info does not match its own secret")
        return out


@dataclass(frozen=True)
class KeyShare:
    """One party's t-of-n share of the key, with everyone's public shares and aux data.

    ``eval_points[j]`` is party j's Shamir evaluation point (nonzero, distinct, not j);
    ``public_shares[j] = g^{x_j}``; ``public_key_point = g^x``."""

    index: int
    threshold: int
    eval_points: dict[int, int]
    secret_share: int
    public_shares: dict[int, Point]
    public_key_point: Point
    chain_code: bytes
    rid: bytes
    epoch: int = 0
    paillier_bits: int = 0
    aux: dict[int, PartyAux] = field(default_factory=dict)
    aux_secret: AuxSecret | None = None

    def __repr__(self) -> str:
        return (f"KeyShare(index={self.index}, {self.threshold}-of-{len(self.participants)}, "
                f"public_key={self.public_key.hex()}, epoch={self.epoch})")

    @property
    def public_key(self) -> bytes:
        """The joint public key, 33-byte compressed SEC1."""
        return self.public_key_point.to_bytes()

    @property
    def participants(self) -> list[int]:
        return sorted(self.eval_points)

    @property
    def has_aux(self) -> bool:
        return self.aux_secret is not None and set(self.aux) == set(self.eval_points)

    def lagrange(self, signers: list[int]) -> int:
        """λ_i for this party over the signer set (Shamir -> additive)."""
        xs = [self.eval_points[j] for j in signers]
        return lagrange_coefficient(self.eval_points[self.index], xs)

    def additive_public_share(self, j: int, signers: list[int]) -> Point:
        xs = [self.eval_points[k] for k in signers]
        return self.public_shares[j] * lagrange_coefficient(self.eval_points[j], xs)

    def public_fingerprint(self) -> bytes:
        """A hash of everything public about the key at this epoch (what all parties must agree on).
        Computed once per object (a share is frozen; a changed share is a new object)."""
        return self._fingerprint

    @cached_property
    def _fingerprint(self) -> bytes:
        tr = Transcript(b"key-public-state")
        tr.append("threshold", self.threshold).append("epoch", self.epoch)
        tr.append("public_key", self.public_key_point).append("chain_code", self.chain_code)
        tr.append("rid", self.rid)
        for j in self.participants:
            tr.append("party", j).append("x", self.eval_points[j]).append("X", self.public_shares[j])
            if j in self.aux:
                a = self.aux[j]
                tr.append_many(N=a.N, Nhat=a.Nhat, s=a.s, t=a.t)
        return tr.digest()

    def with_aux(self, aux: dict[int, PartyAux], secret: AuxSecret, bits: int) -> "KeyShare":
        return replace(self, aux=aux, aux_secret=secret, paillier_bits=bits)

    # -- sealing-friendly encoding (the bytes are secret: seal them, never log them) --

    def to_bytes(self) -> bytes:
        return wire.encode(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> "KeyShare":
        share = wire.decode(data, cls)
        if not 0 <= share.secret_share < Q or (
                Point.generator_mul(share.secret_share) != share.public_shares.get(share.index)):
            raise EncodingError("key share does not match its public share")
        return share


def session_hash(*parts: bytes) -> bytes:
    h = hashlib.sha256(b"appliance/session")
    for p in parts:
        h.update(len(p).to_bytes(4, "big") + p)
    return h.digest()
