"""FROST with pooled nonces: round one (RFC 9591 §5.1) made ahead of time, so signing is ONE
online round.

A holder makes nonce pairs for a key share (``sign.new_nonces``) and publishes each
commitment as a ``PooledCommitment`` SIGNED with its identity key over
``commitment_digest``: (share fingerprint -- PK and every verification share, so another epoch
or key does not match --, the owner's index, the nonce id, D, E). A coordinator picks one
unused pooled commitment per signer; every signer then checks the whole list itself
(``check_pooled``), so a coordinator cannot swap in a commitment of its own making for
another signer (it has no other signer's identity key):

7. every commitment in the package is signed by the party it is listed for, for this key
   share (``SigningRefused`` "check 7: ...", before anything of the nonce is used);

then ``sign.sign_package`` (checks 1-4: the approved message, the signer set, this signer's
own commitment, every element valid) and z_i. The nonce pair itself is single-use in the
node's store and HSM (one HSM key per pair, destroyed on spend), which is what makes a
pooled commitment safe: (d_i, e_i) used for two different lists reveals sk_i.

``FrostPooledSignParty`` is the online round: each party broadcasts (setup, z_i), where the
setup hash covers the scheme, key, message, signer set, tweak and the full commitment list
(with nonce ids); a party given another list or message stops the session without blame
(its share was over another list: not a proof of misbehaviour); every share is checked
(check 6 of ``sign.aggregate_package``: a bad one names its signer) and the verified
signature is the result.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from appliance.tss.frost.keyshare import FrostKeyShare
from appliance.tss.frost.sign import (
    FrostNonces,
    SigningPackage,
    SigningRefused,
    aggregate_package,
    sign_package,
)
from appliance.tss.group import RNG
from appliance.tss.protocol import Done, MessageSigner, MessageVerifier, Party, Round, setup_hash

_DOMAIN = b"appliance/frost/pooled-commitment/v1"


@dataclass(frozen=True)
class PooledCommitment:
    """A published (D_i, E_i) of party ``index``: its nonce id and identity signature."""

    index: int
    nonce_id: bytes
    D: bytes
    E: bytes
    signature: bytes

    def to_json(self) -> dict:
        return {"index": self.index, "nonce_id": self.nonce_id.hex(), "D": self.D.hex(), "E": self.E.hex(),
                "signature": self.signature.hex()}

    @classmethod
    def from_json(cls, d: dict) -> "PooledCommitment":
        """From a peer's JSON (``ValueError``/``TypeError``/``KeyError`` on anything malformed)."""
        if not isinstance(d, dict) or type(d.get("index")) is not int:
            raise ValueError("a pooled commitment is an object with an integer index")
        fields_ = [bytes.fromhex(str(d[k])) for k in ("nonce_id", "D", "E", "signature")]
        if not 1 <= len(fields_[0]) <= 32 or any(len(f) > 64 for f in fields_[1:3]) or len(fields_[3]) != 64:
            raise ValueError("a pooled commitment's fields have the wrong sizes")
        return cls(d["index"], *fields_)


def _lp(b: bytes) -> bytes:
    return len(b).to_bytes(4, "big") + b


def commitment_digest(share_fp: bytes, index: int, nonce_id: bytes, D: bytes, E: bytes) -> bytes:
    """What a holder signs to publish one pooled commitment."""
    return hashlib.sha256(_lp(_DOMAIN) + _lp(share_fp) + index.to_bytes(4, "big")
                          + _lp(nonce_id) + _lp(D) + _lp(E)).digest()


def publish(share: FrostKeyShare, nonces: FrostNonces, signer: MessageSigner) -> PooledCommitment:
    """The signed commitment of this holder's pooled ``nonces``."""
    digest = commitment_digest(share.public_fingerprint(), nonces.index, nonces.nonce_id, nonces.D, nonces.E)
    return PooledCommitment(nonces.index, nonces.nonce_id, nonces.D, nonces.E, signer.sign(digest))


def is_signed(share: FrostKeyShare, c: PooledCommitment, verifier: MessageVerifier) -> bool:
    digest = commitment_digest(share.public_fingerprint(), c.index, c.nonce_id, c.D, c.E)
    return verifier.verify(c.index, digest, c.signature)


def check_pooled(share: FrostKeyShare, commitments: list[PooledCommitment], verifier: MessageVerifier) -> None:
    """Check 7: every commitment signed by the party it is listed for, for this share."""
    seen = set()
    for c in commitments:
        if c.index in seen:
            raise SigningRefused(f"check 7: party {c.index} has two commitments in the list")
        seen.add(c.index)
        if not is_signed(share, c, verifier):
            raise SigningRefused(f"check 7: party {c.index}'s pooled commitment is not signed by it for this key")


def package_of(message: bytes, commitments: list[PooledCommitment]) -> SigningPackage:
    return SigningPackage(bytes(message), {c.index: [c.D, c.E] for c in commitments})


@dataclass(frozen=True)
class PooledR1:
    setup: bytes
    z: bytes


class FrostPooledSignParty(Party):
    """One online round over pooled commitments (checked: 7, then 1-4 when z_i is made)."""

    PROTOCOL = "frost-sign-pooled"

    def __init__(self, session_id: bytes, share: FrostKeyShare, message: bytes,
                 commitments: list[PooledCommitment], nonces: FrostNonces, signer: MessageSigner,
                 verifier: MessageVerifier, rng: RNG, *, merkle_root: bytes | None = None,
                 published_for: FrostKeyShare | None = None) -> None:
        # the commitments were published for the key's own share; ``share`` may be a BIP32
        # child of it (``bip32.derive_key``: the same index, nonces and signer set)
        check_pooled(published_for or share, commitments, verifier)
        super().__init__(session_id, share.index, [c.index for c in commitments], signer, verifier, rng)
        self.share = share
        self.message = bytes(message)
        self.merkle_root = merkle_root
        self.nonces = nonces
        self.package = package_of(message, commitments)
        listed = b"".join(_lp(c.index.to_bytes(4, "big")) + _lp(c.nonce_id) + _lp(c.D) + _lp(c.E)
                          for c in sorted(commitments, key=lambda c: c.index))
        self.setup = setup_hash(self.PROTOCOL, scheme=share.scheme, key=share.public_fingerprint(),
                                message=hashlib.sha256(self.message).digest(), signers=self.parties,
                                tweak=b"-" if merkle_root is None else b"+" + merkle_root,
                                commitments=hashlib.sha256(listed).digest())

    def _first_round(self) -> "PooledShareRound":
        return PooledShareRound(self)


@dataclass(eq=False)
class PooledShareRound(Round):
    """Send (setup, z_i); stop without blame on another setup; check every z_j; aggregate."""

    broadcast = PooledR1
    party: FrostPooledSignParty
    _own: bytes = field(default=b"", init=False)

    def send(self):
        p = self.party
        self._own = sign_package(p.share, p.nonces, p.package, p.message, merkle_root=p.merkle_root)
        return PooledR1(p.setup, self._own), {}

    def agree(self, broadcasts: dict[int, PooledR1]) -> None:
        self.party.require_same_setup(self.party.setup, {j: m.setup for j, m in broadcasts.items()})

    def finish(self, broadcasts: dict[int, PooledR1], directs: dict) -> Done:
        p = self.party
        shares = {**{j: m.z for j, m in broadcasts.items()}, p.me: self._own}
        return Done(aggregate_package(p.share, p.package, shares, merkle_root=p.merkle_root))


FrostPooledSignParty.ROUNDS = {1: PooledShareRound}

__all__ = ["FrostPooledSignParty", "PooledCommitment", "check_pooled", "commitment_digest", "is_signed",
           "package_of", "publish"]
