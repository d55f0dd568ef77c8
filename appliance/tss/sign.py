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

from appliance.tss.ecdsa import Signature, normalize_low_s, recovery_id_for, verify
from appliance.tss.group import G, Q, RNG, Point, inverse
from appliance.tss.keyshare import KeyShare
from appliance.tss.presign import Presignature, PresignatureSpent
from appliance.tss.protocol import MessageSigner, MessageVerifier, Party, ProtocolAbort, RoundSpec
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
    ROUNDS = {
        1: RoundSpec(broadcast=SignR1, echo=True),
        2: RoundSpec(broadcast=SignR2),
    }

    def __init__(self, session_id: bytes, share: KeyShare, presig: Presignature, digest: bytes,
                 signer: MessageSigner, verifier: MessageVerifier, rng: RNG, *, tweak: int = 0) -> None:
        if not isinstance(presig, Presignature):
            raise ProtocolAbort("not a presignature")
        super().__init__(session_id, share.index, presig.signers, signer, verifier, rng)
        if len(digest) != 32:
            raise ProtocolAbort("the digest must be exactly 32 bytes")
        if presig.index != share.index or presig.key_fingerprint != share.public_fingerprint():
            raise ProtocolAbort("the presignature belongs to another key, epoch or party")
        if not 0 <= tweak < Q:
            raise ProtocolAbort("the derivation tweak must be a scalar")
        # single use by construction: once a party holds the presignature it is spent, even if
        # the session fails later (its partial signature may have left). Across a seal, nodes
        # also use the store's durable single-use transition.
        presig.consume()
        self.share, self.presig, self.digest, self.tweak = share, presig, bytes(digest), tweak
        self.child = share.public_key_point + G * tweak
        self.m = int.from_bytes(digest, "big") % Q
        self._nonces: dict[int, bytes] = {}

    def _make_round(self, r: int):
        if r == 1:
            self._nonces[self.me] = self.rng.token_bytes(32)
            return SignR1(self._nonces[self.me], _binding(self.share, self.presig, self.child, self.digest)), {}
        self.rho = rerandomizer(self.share.public_key_point, self.tweak, self.digest, self.presig, self._nonces)
        self.R = self.presig.R * self.rho
        if self.R.is_infinity:
            raise ProtocolAbort("re-randomized nonce point is infinity")
        self.r = self.R.x % Q
        p = self.presig
        self.sigma = inverse(self.rho) * (p.k_tilde * (self.m + self.r * self.tweak) + p.chi_tilde * self.r) % Q
        return SignR2(self.sigma), {}

    def _finish_round(self, r: int, bcast: dict, direct: dict) -> None:
        if r == 1:
            mine = _binding(self.share, self.presig, self.child, self.digest)
            for j in self.others:
                if len(bcast[j].nonce) != 32:
                    raise self.blame("nonce must be 32 bytes", j)
                if bcast[j].binding != mine:
                    raise ProtocolAbort(f"party {j} is signing something else (key, presignature or digest)",
                                        protocol=self.PROTOCOL, round=1)
                self._nonces[j] = bcast[j].nonce
            return
        sigmas = {self.me: self.sigma}
        e = (self.m + self.r * self.tweak) % Q
        for j in self.others:
            s_j = bcast[j].sigma
            if not 0 <= s_j < Q:
                raise self.blame("partial signature is not a scalar", j)
            if self.R * s_j != self.presig.Delta_tilde[j] * e + self.presig.S_tilde[j] * self.r:
                raise self.blame("partial signature does not match the presignature", j)
            sigmas[j] = s_j
        s = sum(sigmas.values()) % Q
        if s == 0 or self.r == 0:
            raise ProtocolAbort("degenerate signature (r or s is zero)")
        sig = normalize_low_s(self.r, s, recovery_id_for(self.R))
        if not verify(self.child, self.digest, sig, strict_low_s=True):
            raise ProtocolAbort("internal: combined signature does not verify")
        self.result = sig
        self.done = True


__all__ = ["SignParty", "Signature", "PresignatureSpent", "rerandomizer"]
