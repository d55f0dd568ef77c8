"""Resharing: move a key from (t, n) to (t', n') over a new committee, same public key.

Parties: the old senders S (at least t holders of the current epoch, all agreeing on its
public state) and the new committee N' (indices, new threshold t'); a party may be in both.
Each new member j gets evaluation point y_j = H(sid, j).

Round 1 (broadcast, echoed; direct): a hash of the session parameters (old key's public
  state, senders, new committee, t'; a mismatch stops without blame), and every old sender i turns its share additive,
  w_i = λ_i·x_i over S, samples g_i of degree t'-1 with g_i(0) = w_i, and broadcasts its
  Feldman vector G_i (t' points); to each new member j it sends
  g_i(y_j) (direct; the node encrypts direct payloads to the recipient's transport key).
  New members that are not old senders broadcast an empty contribution.
Round 2 (broadcast, echoed): checks — every sender's G_i[0] equals λ_i·X_i from the *old* public
  shares (so the constant terms add up to the public key), every received share matches
  G_i — then each new member j sets x'_j = Σ_i g_i(y_j) and confirms with Π^sch for
  X'_j = Σ_i G_i(y_j) (the confirmation DESIGN.md requires before old shares are deleted).
Round 3 (echo only): everyone confirms it saw the same valid confirmations, so an old sender
  is never told to delete its share while a new member aborted.
Output: for a new member, its new KeyShare (epoch + 1, no aux yet: run aux-info next); for
  an old sender outside the new committee, ``ReshareConfirmed`` — every new member has
  proven its share, so the node may delete the old one.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.errors import ParameterError, ProofError

from appliance.tss.group import Q, RNG, Point, lagrange_coefficient, point_sum, poly_commit_eval, poly_eval, random_scalar
from appliance.tss.keygen import evaluation_points
from appliance.tss.keyshare import KeyShare
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
from appliance.tss.transcript import ProofContext, Transcript
from appliance.tss.zk import sch


@dataclass(frozen=True)
class OldKeyInfo:
    """What every participant must agree on about the key being reshared (public)."""

    public_key: Point
    threshold: int
    eval_points: dict[int, int]
    public_shares: dict[int, Point]
    chain_code: bytes
    rid: bytes
    epoch: int

    @classmethod
    def of(cls, share: KeyShare) -> "OldKeyInfo":
        return cls(share.public_key_point, share.threshold, dict(share.eval_points),
                   dict(share.public_shares), share.chain_code, share.rid, share.epoch)


@dataclass(frozen=True)
class ReshareR1:
    setup: bytes
    contributes: bool
    F: list[Point]


@dataclass(frozen=True)
class ReshareShare:
    sigma: int | None


@dataclass(frozen=True)
class ReshareR2:
    psi: sch.SchProof | None


@dataclass(frozen=True)
class ReshareConfirmed:
    """Every new member proved knowledge of its new share."""

    public_key: Point
    new_participants: list[int]


class ReshareParty(Party):
    PROTOCOL = "reshare"

    def __init__(self, session_id: bytes, me: int, old: OldKeyInfo, senders: list[int],
                 new_members: list[int], new_threshold: int, signer: MessageSigner,
                 verifier: MessageVerifier, rng: RNG, *, share: KeyShare | None = None) -> None:
        super().__init__(session_id, me, sorted(set(senders) | set(new_members)), signer, verifier, rng)
        self.old, self.senders, self.new = old, sorted(set(senders)), sorted(set(new_members))
        self.t_new = new_threshold
        if len(self.senders) < old.threshold or not set(self.senders) <= set(old.eval_points):
            raise ParameterError("resharing needs at least t holders of the current key")
        if not 1 <= new_threshold <= len(self.new):
            raise ParameterError("new threshold must be between 1 and the new committee size")
        if (me in self.senders) != (share is not None):
            raise ParameterError("old senders, and only they, bring their share")
        if share is not None and OldKeyInfo.of(share) != old:
            raise ParameterError("this share is not of the key being reshared")
        self.share = share
        self.setup = setup_hash(self.PROTOCOL, old=_old_fingerprint(old), senders=self.senders,
                                new=self.new, threshold=new_threshold)
        self.points = evaluation_points(self.session_id, self.new)
        xs = [old.eval_points[i] for i in self.senders]
        self.lam = {i: lagrange_coefficient(old.eval_points[i], xs) for i in self.senders}

    def ctx(self, prover: int) -> ProofContext:
        return ProofContext(self.session_id, prover, self.old.rid, b"reshare")

    def _first_round(self) -> "ReshareRound1":
        coeffs: list[int] = []
        if self.share is not None:
            w = self.share.secret_share * self.lam[self.me] % Q
            coeffs = [w] + [random_scalar(self.rng) for _ in range(self.t_new - 1)]
        return ReshareRound1(self, coeffs)


@dataclass(eq=False)
class ReshareRound1(Round):
    """Old senders deal their additive share to the new committee (Feldman VSS)."""

    broadcast = ReshareR1
    direct = ReshareShare
    echo = True
    party: ReshareParty
    coeffs: list[int]

    def __repr__(self) -> str:
        return "ReshareRound1(<secret>)"

    def send(self):
        p = self.party
        if not self.coeffs:
            return ReshareR1(p.setup, False, []), {j: ReshareShare(None) for j in p.others}
        F = [Point.generator_mul(a) for a in self.coeffs]
        shares = {j: ReshareShare(poly_eval(self.coeffs, p.points[j]) if j in p.new else None)
                  for j in p.others}
        return ReshareR1(p.setup, True, F), shares

    def agree(self, broadcasts: dict[int, ReshareR1]) -> None:
        self.party.require_same_setup(self.party.setup, {j: m.setup for j, m in broadcasts.items()})

    def check(self, j: int, msg: ReshareR1, direct: ReshareShare) -> None:
        p = self.party
        if msg.contributes != (j in p.senders):
            raise Misbehaviour("contributes to the reshare against the agreed sender set")
        sigma = direct.sigma
        if j not in p.senders:
            if sigma is not None:
                raise Misbehaviour("sent a share without being a sender")
            return
        if len(msg.F) != p.t_new:
            raise Misbehaviour("Feldman vector must have exactly t' entries")
        if msg.F[0] != p.old.public_shares[j] * p.lam[j]:
            raise Misbehaviour("constant term is not the sender's share of the key")
        if p.me in p.new:
            if sigma is None or not 0 <= sigma < Q:
                raise Misbehaviour("missing or malformed share")
            if Point.generator_mul(sigma) != poly_commit_eval(msg.F, p.points[p.me]):
                raise Misbehaviour("share does not match the Feldman commitments")
        elif sigma is not None:
            raise Misbehaviour("sent a share to a party outside the new committee")

    def finish(self, broadcasts: dict[int, ReshareR1], directs: dict[int, ReshareShare]) -> Round:
        p = self.party
        F = {j: m.F for j, m in broadcasts.items() if j in p.senders}
        sigma = {j: directs[j].sigma for j in F} if p.me in p.new else {}
        if self.coeffs:
            F[p.me] = [Point.generator_mul(a) for a in self.coeffs]
            if p.me in p.new:
                sigma[p.me] = poly_eval(self.coeffs, p.points[p.me])
        if point_sum(Fj[0] for Fj in F.values()) != p.old.public_key:
            raise ProtocolAbort("internal: the constant terms do not add up to the public key")
        x_new = sum(sigma.values()) % Q if p.me in p.new else None
        new_public = {k: point_sum(poly_commit_eval(Fj, p.points[k]) for Fj in F.values()) for k in p.new}
        return self.next(x_new=x_new, new_public=new_public)


@dataclass(eq=False)
class ReshareRound2(Round):
    """New members confirm their new share with Π^sch; the round is echoed, so an old
    sender learns ``ReshareConfirmed`` only when everyone saw the same valid confirmations."""

    broadcast = ReshareR2
    echo = True
    party: ReshareParty
    x_new: int | None
    new_public: dict[int, Point]

    def __repr__(self) -> str:
        return "ReshareRound2(<secret>)"

    def send(self):
        p = self.party
        if self.x_new is None:
            return ReshareR2(None), {}
        return ReshareR2(sch.prove(p.ctx(p.me), Point.generator_mul(self.x_new), self.x_new, p.rng)), {}

    def check(self, j: int, msg: ReshareR2, direct: None) -> None:
        p = self.party
        if (msg.psi is not None) != (j in p.new):
            raise Misbehaviour("confirmation missing or unexpected")
        if msg.psi is None:
            return
        try:
            sch.verify(p.ctx(j), self.new_public[j], msg.psi)
        except ProofError as exc:
            raise Misbehaviour(f"confirmation proof failed: {exc}") from exc

    def finish(self, broadcasts: dict, directs: dict) -> Done:
        p = self.party
        if self.x_new is None:
            return Done(ReshareConfirmed(p.old.public_key, list(p.new)))
        if Point.generator_mul(self.x_new) != self.new_public[p.me]:
            raise ProtocolAbort("internal: new share does not match its public share")
        return Done(KeyShare(
            index=p.me, threshold=p.t_new, eval_points=dict(p.points),
            secret_share=self.x_new, public_shares=self.new_public,
            public_key_point=p.old.public_key, chain_code=p.old.chain_code,
            rid=p.old.rid, epoch=p.old.epoch + 1,
        ))


ReshareParty.ROUNDS = {1: ReshareRound1, 2: ReshareRound2}


def _old_fingerprint(old: OldKeyInfo) -> bytes:
    tr = Transcript(b"reshare-old-key").append("pk", old.public_key).append("t", old.threshold)
    tr.append("epoch", old.epoch).append("chain", old.chain_code).append("rid", old.rid)
    for j in sorted(old.eval_points):
        tr.append("j", j).append("x", old.eval_points[j]).append("X", old.public_shares[j])
    return tr.digest()
