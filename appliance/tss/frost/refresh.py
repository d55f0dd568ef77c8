"""Proactive refresh of a FROST key (zero-sharing): every share changes, the public key and the
committee stay, old shares become useless with new ones (the FROST counterpart of the ECDSA
refresh in ``aux.py``), in this package's sans-I/O ``Party`` form.

Every participant of the key takes part (a share left out would no longer match the others).
Each party i draws f_i of degree t-1 with f_i(0) = 0 (coefficients a_i1..a_i,t-1 random; the
zero constant term is implied, never sent, so it cannot be anything else).

Round 1 (broadcast, echoed; direct): the session-parameter hash (the key's public fingerprint,
  parties, t; a party given another key state stops the session without blame) and the
  Feldman vector C_i = (a_i1·G, ..., a_i,t-1·G), exactly t-1 entries; to each j: f_i(x_j).
Round 2 (echo only): everyone confirms it saw the same vectors and accepted its shares, so no
  party keeps a refreshed share while another aborted.
Output: sk_i' = sk_i + Σ_j f_j(x_i); PK_k' = PK_k + Σ_j Σ_{m≥1} x_k^m·C_jm; PK unchanged;
  epoch + 1.

Checks on party j's messages (a failure names j):
1. round 1 carries exactly t-1 commitments, each a valid element other than the identity;
2. the share f_j(x_i) decodes as a scalar;
3. f_j(x_i)·G == Σ_{m≥1} x_i^m·C_jm (the share's dealer is named).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from appliance.errors import EncodingError, ParameterError
from appliance.tss.frost.dkg import poly_eval
from appliance.tss.frost.keyshare import FrostKeyShare
from appliance.tss.group import RNG
from appliance.tss.protocol import (
    Done,
    MessageSigner,
    MessageVerifier,
    Misbehaviour,
    Party,
    ProtocolAbort,
    Round,
    setup_hash,
)


def zero_poly_eval_public(G: Any, C: list[Any], x: Any) -> Any:
    """Σ_{m≥1} x^m·C_m for C = (C_1, ..., C_{t-1}) (the constant term is the identity)."""
    acc, power = G.IDENTITY, x
    for c in C:
        acc = G.padd(acc, G.mul_point(c, power))
        power = G.mul(power, x)
    return acc


@dataclass(frozen=True)
class RefreshR1:
    setup: bytes
    commitments: list[bytes]


@dataclass(frozen=True)
class RefreshShare:
    share: bytes


class FrostRefreshParty(Party):
    PROTOCOL = "frost-refresh"

    def __init__(self, session_id: bytes, share: FrostKeyShare, signer: MessageSigner,
                 verifier: MessageVerifier, rng: RNG) -> None:
        super().__init__(session_id, share.index, share.participants, signer, verifier, rng)
        if share.threshold < 2:
            raise ParameterError("a 1-of-n key has no shares to refresh (every share is the key)")
        self.share = share
        self.S = share.suite
        self.t = share.threshold
        self.setup = setup_hash(self.PROTOCOL, key=share.public_fingerprint(), parties=self.parties,
                                threshold=self.t)

    def _first_round(self) -> "RefreshRound1":
        G = self.S.G
        return RefreshRound1(self, [G.ZERO] + [G.random_scalar(self.rng) for _ in range(self.t - 1)])


@dataclass(eq=False)
class RefreshRound1(Round):
    """Deal a sharing of zero (Feldman vector without its constant term); check the shares."""

    broadcast = RefreshR1
    direct = RefreshShare
    echo = True
    party: FrostRefreshParty
    coeffs: list[Any]

    def __repr__(self) -> str:
        return "RefreshRound1(<secret>)"

    def _vector(self) -> list[Any]:
        G = self.party.S.G
        return [G.base_mul(a) for a in self.coeffs[1:]]

    def send(self):
        p = self.party
        G = p.S.G
        shares = {j: RefreshShare(G.serialize_scalar(poly_eval(p.S, self.coeffs, p.share.identifier(j))))
                  for j in p.others}
        return RefreshR1(p.setup, [G.serialize_element(c) for c in self._vector()]), shares

    def agree(self, broadcasts: dict[int, RefreshR1]) -> None:
        self.party.require_same_setup(self.party.setup, {j: m.setup for j, m in broadcasts.items()})

    def check(self, j: int, msg: RefreshR1, direct: RefreshShare) -> None:
        p = self.party
        G = p.S.G
        try:
            if len(msg.commitments) != p.t - 1:
                raise EncodingError(f"expected exactly {p.t - 1} commitments")
            C = [G.deserialize_element(c) for c in msg.commitments]
        except EncodingError as exc:
            raise Misbehaviour(f"check 1: {exc}") from exc
        try:
            s = G.deserialize_scalar(direct.share)
        except EncodingError as exc:
            raise Misbehaviour(f"check 2: {exc}") from exc
        if G.base_mul(s) != zero_poly_eval_public(G, C, p.share.identifier(p.me)):
            raise Misbehaviour("check 3: share does not match the dealer's zero-sharing commitments")

    def finish(self, broadcasts: dict[int, RefreshR1], directs: dict[int, RefreshShare]) -> Done:
        p = self.party
        S, G, share = p.S, p.S.G, p.share
        C = {j: [G.deserialize_element(c) for c in m.commitments] for j, m in broadcasts.items()}
        C[p.me] = self._vector()
        sk = G.add(share.sk(), poly_eval(S, self.coeffs, share.identifier(p.me)))
        for d in directs.values():
            sk = G.add(sk, G.deserialize_scalar(d.share))
        PKs = {k: G.psum([share.PK_i(k)] + [zero_poly_eval_public(G, C[j], share.identifier(k))
                                             for j in p.parties])
               for k in p.parties}
        if G.base_mul(sk) != PKs[p.me]:
            raise ProtocolAbort("internal: own refreshed share does not match its verification share")
        return Done(replace(
            share, secret_share=G.serialize_scalar(sk),
            verification_shares={k: G.serialize_element(X) for k, X in PKs.items()},
            epoch=share.epoch + 1,
        ))


FrostRefreshParty.ROUNDS = {1: RefreshRound1}
