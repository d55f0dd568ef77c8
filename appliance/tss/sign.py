"""Signing from a presignature, re-randomized (Groth-Shoup, eprint 2021/1330).

Inputs for every signer: its ``Presignature`` (R = Γ, k̃_i, χ̃_i, and Δ̃_j, S̃_j for every j),
the public key X, a derivation tweak t (X' = X + t·G for a BIP32 child; 0 for the root), and the
32-byte digest m.

Round 1 (broadcast, echoed): a fresh 32-byte nonce n_i and a hash binding what i is about to
  sign (key state, presignature id, X', m). The echo in round 2 makes sure all signers saw the
  same nonces before any partial signature is checked.
Round 2 (broadcast): every signer derives the re-randomizer itself,
  ρ = H(X, t, m, R, presignature id, signer set, n_1..n_t) (no single party chooses it: every
  nonce enters the hash), R' = R^ρ, r = x(R') mod q, and sends
  σ_i = ρ^-1 · (k̃_i·(m + r·t) + χ̃_i·r).
Output: each σ_j is checked against the presignature: R'^{σ_j} = Δ̃_j^{m + r t} · S̃_j^{r};
  a failing one names j. s = Σ σ_j; the signature (r, s) is verified against X' before it is
  released, then normalized to low-S with the recovery id adjusted.

Why it is correct: Σk̃_j = 1/γ and Σχ̃_j = x/γ, so s = (m + r·(x + t)) / (γρ), the ECDSA
signature under x + t with nonce γρ, whose point is R'.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.errors import ParameterError
from appliance.tss.ecdsa import Signature, normalize_low_s, recovery_id_for, verify_with_libsecp256k1
from appliance.tss.group import G, Q, RNG, Point, public_inverse
from appliance.tss.keyshare import KeyShare
from appliance.tss.presign import Presignature, PresignatureSpent
from appliance.tss.protocol import (
    Done,
    MessageSigner,
    MessageVerifier,
    Misbehaviour,
    Party,
    ProtocolAbort,
    Round,
    abort_naming,
)
from appliance.tss.transcript import Transcript


@dataclass(frozen=True)
class SignR1:
    nonce: bytes
    binding: bytes


@dataclass(frozen=True)
class SignR2:
    sigma: int


def _binding(share: KeyShare, presig: Presignature, child: Point, digest: bytes) -> bytes:
    tr = Transcript(b"sign-binding")
    tr.append("key", share.public_fingerprint()).append("presig", presig.presig_id)
    tr.append("signers", presig.signers).append("child", child).append("digest", digest)
    return tr.digest()


def rerandomizer(public_key: Point, tweak: int, digest: bytes, presig: Presignature,
                 nonces: dict[int, bytes]) -> int:
    tr = Transcript(b"sign-rerandomize")
    tr.append("X", public_key).append("t", tweak).append("m", digest).append("R", presig.R)
    tr.append("presig", presig.presig_id).append("signers", presig.signers)
    for j in sorted(nonces):
        tr.append("j", j).append("n", nonces[j])
    rho = 0
    while rho == 0:
        rho = tr.challenge_scalar("rho")
    return rho


class SignParty(Party):
    PROTOCOL = "sign"

    def __init__(self, session_id: bytes, share: KeyShare, presig: Presignature, digest: bytes,
                 signer: MessageSigner, verifier: MessageVerifier, rng: RNG, *, tweak: int = 0) -> None:
        if not isinstance(presig, Presignature):
            raise ParameterError("not a presignature")
        super().__init__(session_id, share.index, presig.signers, signer, verifier, rng)
        if len(digest) != 32:
            raise ParameterError("the digest must be exactly 32 bytes")
        if presig.index != share.index or presig.key_fingerprint != share.public_fingerprint():
            raise ParameterError("the presignature belongs to another key, epoch or party")
        if not 0 <= tweak < Q:
            raise ParameterError("the derivation tweak must be a scalar")
        # single use by construction: once a party holds the presignature it is spent, even if
        # the session fails later (its partial signature may have left). Across a seal, nodes
        # also use the store's durable single-use transition.
        presig.consume()
        self.share, self.presig, self.digest, self.tweak = share, presig, bytes(digest), tweak
        self.child = share.public_key_point + G * tweak
        self.m = int.from_bytes(digest, "big") % Q
        self.binding = _binding(share, presig, self.child, self.digest)

    def _first_round(self) -> "SignRound1":
        return SignRound1(self, self.rng.token_bytes(32))


@dataclass(eq=False)
class SignRound1(Round):
    """Send a fresh nonce and what this party is about to sign."""

    broadcast = SignR1
    echo = True
    party: SignParty
    nonce: bytes

    def send(self):
        return SignR1(self.nonce, self.party.binding), {}

    def agree(self, broadcasts: dict[int, SignR1]) -> None:
        differ = sorted(j for j, m in broadcasts.items() if m.binding != self.party.binding)
        if differ:
            raise ProtocolAbort(f"parties {differ} are signing something else (key, presignature or digest)")

    def check(self, j: int, msg: SignR1, direct: None) -> None:
        if len(msg.nonce) != 32:
            raise Misbehaviour("nonce must be 32 bytes")

    def finish(self, broadcasts: dict[int, SignR1], directs: dict) -> Round:
        p = self.party
        nonces = {p.me: self.nonce, **{j: m.nonce for j, m in broadcasts.items()}}
        rho = rerandomizer(p.share.public_key_point, p.tweak, p.digest, p.presig, nonces)
        R = p.presig.R * rho
        if R.is_infinity:
            raise ProtocolAbort("re-randomized nonce point is infinity")
        r = R.x % Q
        sigma = public_inverse(rho) * (p.presig.k_tilde * (p.m + r * p.tweak) + p.presig.chi_tilde * r) % Q
        return self.next(R=R, r=r, sigma=sigma)


@dataclass(eq=False)
class SignRound2(Round):
    """Send σ_i; check every σ_j against the presignature; combine and verify."""

    broadcast = SignR2
    party: SignParty
    R: Point
    r: int
    sigma: int

    def __repr__(self) -> str:
        return "SignRound2(<secret>)"

    def send(self):
        return SignR2(self.sigma), {}

    def check(self, j: int, msg: SignR2, direct: None) -> None:
        if not 0 <= msg.sigma < Q:
            raise Misbehaviour("partial signature is not a scalar")

    def finish(self, broadcasts: dict[int, SignR2], directs: dict) -> Done:
        """The combined signature's verification is the batched check of every σ_j (unit
        weights: R'^{Σσ_j} = Π Δ̃_j^{m+rt} · S̃_j^{r} is exactly ECDSA verification of
        (r, Σσ_j) under X', since ΣΔ̃_j = G and ΣS̃_j = X); only when it fails is each σ_j
        checked on its own, to name who sent a wrong one. When it holds, s is the honest s."""
        p = self.party
        s = (self.sigma + sum(m.sigma for m in broadcasts.values())) % Q
        sig = normalize_low_s(self.r, s, recovery_id_for(self.R)) if s and self.r else None
        if sig is not None and verify_with_libsecp256k1(p.child, p.digest, sig):
            return Done(sig)
        e = (p.m + self.r * p.tweak) % Q
        faults = {j: "partial signature does not match the presignature"
                  for j, m in sorted(broadcasts.items())
                  if self.R * m.sigma != p.presig.Delta_tilde[j] * e + p.presig.S_tilde[j] * self.r}
        if faults:
            raise abort_naming(faults)
        if sig is None:
            raise ProtocolAbort("degenerate signature (r or s is zero)")
        raise ProtocolAbort("internal: combined signature does not verify")


SignParty.ROUNDS = {1: SignRound1, 2: SignRound2}


__all__ = ["SignParty", "SignRound1", "SignRound2", "Signature", "PresignatureSpent", "rerandomizer"]
