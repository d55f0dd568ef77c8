"""Resharing a FROST key: (t, n) to (t', n') over a new committee, same group public key (the
FROST counterpart of ``appliance/tss/reshare.py``), in this package's sans-I/O ``Party`` form.

Parties: the old senders S (at least t holders of the current epoch, all agreeing on its
public state, ``FrostOldKey``) and the new committee N' (indices, new threshold t'); a party
may be in both. New identifiers y_j = HX("id", sid || j), as the DKG makes them.

Round 1 (broadcast, echoed; direct): the session-parameter hash (the old key's public state,
  senders, new committee, t'; a mismatch stops without blame). Every old sender i turns its
  share additive, w_i = λ_i·sk_i (λ_i over S's old identifiers), draws g_i of degree t'-1 with
  g_i(0) = w_i and broadcasts its Feldman vector G_i (t' elements); to each new member j it
  sends g_i(y_j). A new member that is not a sender broadcasts an empty contribution; a share
  to a party outside N' is empty.
Round 2 (broadcast, echoed): each new member j sets y'_j = Σ_i g_i(y_j) and proves knowledge
  of it for X'_j = Σ_i G_i(y_j): (R, μ) with c = HX("reshare-confirm", sid || j || X'_j || R),
  μ = k + c·y'_j. Old senders outside N' send nothing of their own.
Round 3 (echo only): everyone confirms it saw the same valid confirmations, so an old sender
  is never told it may delete its share while a new member aborted.
Output: for a new member, a ``FrostKeyShare`` (epoch + 1) whose group key is the unchanged PK;
  for an old sender outside N', ``FrostReshareConfirmed``.

Checks on party j's messages (a failure names j):
1. j contributes (or not) as the agreed sender set says; a sender's vector has exactly t'
   valid elements other than the identity;
2. G_j[0] == λ_j·PK_j with PK_j j's *old* verification share (the constant terms add up to
   PK: a dealer cannot shift the key or deal anything but its Lagrange-weighted share);
3. the share g_j(y_i) is present exactly when it should be and decodes as a scalar;
4. g_j(y_i)·G == Σ_m y_i^m·G_jm (the share's dealer is named);
5. j's confirmation is present exactly when j is a new member, decodes, and verifies against
   X'_j (computed by everyone from the echoed vectors).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from appliance.errors import EncodingError, ParameterError
from appliance.tss.frost import core
from appliance.tss.frost.dkg import commitment_eval, identifiers, poly_eval
from appliance.tss.frost.keyshare import FrostKeyShare
from appliance.tss.frost.suites import Ciphersuite, suite_for
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
from appliance.tss.transcript import Transcript


@dataclass(frozen=True)
class FrostOldKey:
    """What every participant must agree on about the key being reshared (public)."""

    scheme: str
    threshold: int
    identifiers: dict[int, bytes]
    verification_shares: dict[int, bytes]
    group_public_key: bytes
    epoch: int

    @classmethod
    def of(cls, share: FrostKeyShare) -> "FrostOldKey":
        return cls(share.scheme, share.threshold, dict(share.identifiers), dict(share.verification_shares),
                   share.group_public_key, share.epoch)

    def fingerprint(self) -> bytes:
        tr = Transcript(b"frost-reshare-old-key").append("scheme", self.scheme)
        tr.append("threshold", self.threshold).append("epoch", self.epoch).append("PK", self.group_public_key)
        for j in sorted(self.identifiers):
            tr.append("party", j).append("id", self.identifiers[j]).append("PK_j", self.verification_shares[j])
        return tr.digest()


@dataclass(frozen=True)
class FrostReshareConfirmed:
    """Every new member proved knowledge of its new share: the old one may be deleted."""

    group_public_key: bytes
    new_participants: list[int]


@dataclass(frozen=True)
class ReshareR1:
    setup: bytes
    contributes: bool
    commitments: list[bytes]


@dataclass(frozen=True)
class ReshareShare:
    share: bytes | None


@dataclass(frozen=True)
class ReshareR2:
    R: bytes | None
    mu: bytes | None


def confirm_challenge(S: Ciphersuite, session_id: bytes, j: int, X: Any, R: Any) -> Any:
    G = S.G
    return S.HX(b"reshare-confirm", len(session_id).to_bytes(2, "big") + session_id + j.to_bytes(4, "big")
                + G.serialize_element(X) + G.serialize_element(R))


class FrostReshareParty(Party):
    PROTOCOL = "frost-reshare"

    def __init__(self, session_id: bytes, me: int, old: FrostOldKey, senders: list[int],
                 new_members: list[int], new_threshold: int, signer: MessageSigner,
                 verifier: MessageVerifier, rng: RNG, *, share: FrostKeyShare | None = None) -> None:
        super().__init__(session_id, me, sorted(set(senders) | set(new_members)), signer, verifier, rng)
        self.old, self.senders, self.new = old, sorted(set(senders)), sorted(set(new_members))
        self.t_new = new_threshold
        self.S = suite_for(old.scheme)
        if len(self.senders) < old.threshold or not set(self.senders) <= set(old.identifiers):
            raise ParameterError("resharing needs at least t holders of the current key")
        if not 1 <= new_threshold <= len(self.new):
            raise ParameterError("new threshold must be between 1 and the new committee size")
        if (me in self.senders) != (share is not None):
            raise ParameterError("old senders, and only they, bring their share")
        if share is not None and FrostOldKey.of(share) != old:
            raise ParameterError("this share is not of the key being reshared")
        self.share = share
        self.setup = setup_hash(self.PROTOCOL, old=old.fingerprint(), senders=self.senders, new=self.new,
                                threshold=new_threshold)
        G = self.S.G
        self.ids = identifiers(self.S, self.session_id, self.new)
        old_ids = {i: G.deserialize_scalar(old.identifiers[i]) for i in self.senders}
        self.lam = {i: core.derive_interpolating_value(self.S, list(old_ids.values()), old_ids[i])
                    for i in self.senders}

    def old_PK_i(self, j: int) -> Any:
        return self.S.G.deserialize_element(self.old.verification_shares[j])

    def _first_round(self) -> "ReshareRound1":
        coeffs: list[Any] = []
        if self.share is not None:
            G = self.S.G
            w = G.mul(self.lam[self.me], self.share.sk())
            coeffs = [w] + [G.random_scalar(self.rng) for _ in range(self.t_new - 1)]
        return ReshareRound1(self, coeffs)


@dataclass(eq=False)
class ReshareRound1(Round):
    """Old senders deal their Lagrange-weighted share to the new committee (Feldman VSS)."""

    broadcast = ReshareR1
    direct = ReshareShare
    echo = True
    party: FrostReshareParty
    coeffs: list[Any]

    def __repr__(self) -> str:
        return "ReshareRound1(<secret>)"

    def _vector(self) -> list[Any]:
        G = self.party.S.G
        return [G.base_mul(a) for a in self.coeffs]

    def send(self):
        p = self.party
        G = p.S.G
        if not self.coeffs:
            return ReshareR1(p.setup, False, []), {j: ReshareShare(None) for j in p.others}
        shares = {j: ReshareShare(G.serialize_scalar(poly_eval(p.S, self.coeffs, p.ids[j])) if j in p.new else None)
                  for j in p.others}
        return ReshareR1(p.setup, True, [G.serialize_element(c) for c in self._vector()]), shares

    def agree(self, broadcasts: dict[int, ReshareR1]) -> None:
        self.party.require_same_setup(self.party.setup, {j: m.setup for j, m in broadcasts.items()})

    def check(self, j: int, msg: ReshareR1, direct: ReshareShare) -> None:
        p = self.party
        G = p.S.G
        if msg.contributes != (j in p.senders):
            raise Misbehaviour("check 1: contributes against the agreed sender set")
        if j not in p.senders:
            if msg.commitments or direct.share is not None:
                raise Misbehaviour("check 1: sent a contribution without being a sender")
            return
        try:
            if len(msg.commitments) != p.t_new:
                raise EncodingError(f"expected exactly {p.t_new} commitments")
            C = [G.deserialize_element(c) for c in msg.commitments]
        except EncodingError as exc:
            raise Misbehaviour(f"check 1: {exc}") from exc
        if C[0] != G.mul_point(p.old_PK_i(j), p.lam[j]):
            raise Misbehaviour("check 2: constant term is not the sender's Lagrange-weighted share of the key")
        if (direct.share is not None) != (p.me in p.new):
            raise Misbehaviour("check 3: share missing, or sent to a party outside the new committee")
        if direct.share is None:
            return
        try:
            s = G.deserialize_scalar(direct.share)
        except EncodingError as exc:
            raise Misbehaviour(f"check 3: {exc}") from exc
        if G.base_mul(s) != commitment_eval(p.S, C, p.ids[p.me]):
            raise Misbehaviour("check 4: share does not match the dealer's Feldman commitments")

    def finish(self, broadcasts: dict[int, ReshareR1], directs: dict[int, ReshareShare]) -> Round:
        p = self.party
        S, G = p.S, p.S.G
        C = {j: [G.deserialize_element(c) for c in m.commitments] for j, m in broadcasts.items() if j in p.senders}
        if self.coeffs:
            C[p.me] = self._vector()
        if G.psum(Cj[0] for Cj in C.values()) != G.deserialize_element(p.old.group_public_key):
            raise ProtocolAbort("internal: the constant terms do not add up to the group public key")
        y_new = None
        if p.me in p.new:
            y_new = poly_eval(S, self.coeffs, p.ids[p.me]) if self.coeffs else G.ZERO
            for j in C:
                if j != p.me:
                    y_new = G.add(y_new, G.deserialize_scalar(directs[j].share))
        new_public = {k: G.psum(commitment_eval(S, Cj, p.ids[k]) for Cj in C.values()) for k in p.new}
        return self.next(y_new=y_new, new_public=new_public)


@dataclass(eq=False)
class ReshareRound2(Round):
    """New members prove knowledge of their new share; echoed, so an old sender learns
    ``FrostReshareConfirmed`` only when everyone saw the same valid confirmations."""

    broadcast = ReshareR2
    echo = True
    party: FrostReshareParty
    y_new: Any
    new_public: dict[int, Any]

    def __repr__(self) -> str:
        return "ReshareRound2(<secret>)"

    def send(self):
        p = self.party
        G = p.S.G
        if self.y_new is None:
            return ReshareR2(None, None), {}
        k = G.random_scalar(p.rng)
        R = G.base_mul(k)
        c = confirm_challenge(p.S, p.session_id, p.me, self.new_public[p.me], R)
        return ReshareR2(G.serialize_element(R), G.serialize_scalar(G.add(k, G.mul(c, self.y_new)))), {}

    def check(self, j: int, msg: ReshareR2, direct: None) -> None:
        p = self.party
        G = p.S.G
        present = msg.R is not None and msg.mu is not None
        if present != (j in p.new) or (not present and (msg.R is not None or msg.mu is not None)):
            raise Misbehaviour("check 5: confirmation missing or unexpected")
        if not present:
            return
        try:
            R, mu = G.deserialize_element(msg.R), G.deserialize_scalar(msg.mu)
        except EncodingError as exc:
            raise Misbehaviour(f"check 5: {exc}") from exc
        X = self.new_public[j]
        if G.base_mul(mu) != G.padd(R, G.mul_point(X, confirm_challenge(p.S, p.session_id, j, X, R))):
            raise Misbehaviour("check 5: confirmation proof fails")

    def finish(self, broadcasts: dict, directs: dict) -> Done:
        p = self.party
        G = p.S.G
        if self.y_new is None:
            return Done(FrostReshareConfirmed(p.old.group_public_key, list(p.new)))
        if G.base_mul(self.y_new) != self.new_public[p.me]:
            raise ProtocolAbort("internal: new share does not match its verification share")
        return Done(FrostKeyShare(
            scheme=p.old.scheme, index=p.me, threshold=p.t_new,
            identifiers={j: G.serialize_scalar(y) for j, y in p.ids.items()},
            secret_share=G.serialize_scalar(self.y_new),
            verification_shares={k: G.serialize_element(X) for k, X in self.new_public.items()},
            group_public_key=p.old.group_public_key, epoch=p.old.epoch + 1,
        ))


FrostReshareParty.ROUNDS = {1: ReshareRound1, 2: ReshareRound2}
