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

from appliance.tss.group import Q, RNG, Point, lagrange_coefficient, point_sum, poly_commit_eval, poly_eval, random_scalar
from appliance.tss.keygen import evaluation_points
from appliance.tss.keyshare import KeyShare
from appliance.tss.protocol import MessageSigner, MessageVerifier, Party, ProtocolAbort, RoundSpec, setup_hash
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
    ROUNDS = {
        1: RoundSpec(broadcast=ReshareR1, direct=ReshareShare, echo=True),
        2: RoundSpec(broadcast=ReshareR2, echo=True),
    }

    def __init__(self, session_id: bytes, me: int, old: OldKeyInfo, senders: list[int],
                 new_members: list[int], new_threshold: int, signer: MessageSigner,
                 verifier: MessageVerifier, rng: RNG, *, share: KeyShare | None = None) -> None:
        super().__init__(session_id, me, sorted(set(senders) | set(new_members)), signer, verifier, rng)
        self.old, self.senders, self.new = old, sorted(set(senders)), sorted(set(new_members))
        self.t_new = new_threshold
        if len(self.senders) < old.threshold or not set(self.senders) <= set(old.eval_points):
            raise ProtocolAbort("resharing needs at least t holders of the current key")
        if not 1 <= new_threshold <= len(self.new):
            raise ProtocolAbort("new threshold must be between 1 and the new committee size")
        if (me in self.senders) != (share is not None):
            raise ProtocolAbort("old senders, and only they, bring their share")
        if share is not None and OldKeyInfo.of(share) != old:
            raise ProtocolAbort("this share is not of the key being reshared")
        self.share = share
        self._setup = setup_hash(self.PROTOCOL, old=_old_fingerprint(old), senders=self.senders,
                                 new=self.new, threshold=new_threshold)
        self.points = evaluation_points(self.session_id, self.new)
        xs = [old.eval_points[i] for i in self.senders]
        self.lam = {i: lagrange_coefficient(old.eval_points[i], xs) for i in self.senders}
        self._coeffs: list[int] = []
        if share is not None:
            w = share.secret_share * self.lam[me] % Q
            self._coeffs = [w] + [random_scalar(rng) for _ in range(new_threshold - 1)]
        self._F: dict[int, list[Point]] = {}
        self._sigma: dict[int, int] = {}

    def _ctx(self, prover: int) -> ProofContext:
        return ProofContext(self.session_id, prover, self.old.rid, b"reshare")

    def _make_round(self, r: int):
        if r == 1:
            if not self._coeffs:
                return ReshareR1(self._setup, False, []), {j: ReshareShare(None) for j in self.others}
            F = [Point.generator_mul(a) for a in self._coeffs]
            self._F[self.me] = F
            if self.me in self.new:
                self._sigma[self.me] = poly_eval(self._coeffs, self.points[self.me])
            shares = {j: ReshareShare(poly_eval(self._coeffs, self.points[j]) if j in self.new else None)
                      for j in self.others}
            return ReshareR1(self._setup, True, F), shares
        if self.me not in self.new:
            return ReshareR2(None), {}
        self.x_new = sum(self._sigma.values()) % Q
        X = Point.generator_mul(self.x_new)
        return ReshareR2(sch.prove(self._ctx(self.me), X, self.x_new, self.rng)), {}

    def _finish_round(self, r: int, bcast: dict, direct: dict) -> None:
        if r == 1:
            self.require_same_setup(self._setup, {j: m.setup for j, m in bcast.items()})
            for j in self.others:
                msg: ReshareR1 = bcast[j]
                if msg.contributes != (j in self.senders):
                    raise self.blame("contributes to the reshare against the agreed sender set", j)
                if j not in self.senders:
                    if direct[j].sigma is not None:
                        raise self.blame("sent a share without being a sender", j)
                    continue
                if len(msg.F) != self.t_new:
                    raise self.blame("Feldman vector must have exactly t' entries", j)
                if msg.F[0] != self.old.public_shares[j] * self.lam[j]:
                    raise self.blame("constant term is not the sender's share of the key", j)
                self._F[j] = msg.F
                sigma = direct[j].sigma
                if self.me in self.new:
                    if sigma is None or not 0 <= sigma < Q:
                        raise self.blame("missing or malformed share", j)
                    if Point.generator_mul(sigma) != poly_commit_eval(msg.F, self.points[self.me]):
                        raise self.blame("share does not match the Feldman commitments", j)
                    self._sigma[j] = sigma
                elif sigma is not None:
                    raise self.blame("sent a share to a party outside the new committee", j)
            if point_sum(F[0] for F in self._F.values()) != self.old.public_key:
                raise ProtocolAbort("internal: the constant terms do not add up to the public key")
            return
        self.new_public = {k: point_sum(poly_commit_eval(F, self.points[k]) for F in self._F.values())
                           for k in self.new}
        for j in self.others:
            psi = bcast[j].psi
            if (psi is not None) != (j in self.new):
                raise self.blame("confirmation missing or unexpected", j)
            if psi is None:
                continue
            try:
                sch.verify(self._ctx(j), self.new_public[j], psi)
            except Exception as exc:
                raise self.blame(f"confirmation proof failed: {exc}", j) from exc
        if self.me in self.new:
            if Point.generator_mul(self.x_new) != self.new_public[self.me]:
                raise ProtocolAbort("internal: new share does not match its public share")
            self._result = KeyShare(
                index=self.me, threshold=self.t_new, eval_points=dict(self.points),
                secret_share=self.x_new, public_shares=self.new_public,
                public_key_point=self.old.public_key, chain_code=self.old.chain_code,
                rid=self.old.rid, epoch=self.old.epoch + 1,
            )
        else:
            self._result = ReshareConfirmed(self.old.public_key, list(self.new))

    def _final_result(self) -> "KeyShare | ReshareConfirmed":
        """After the echo round: every party saw every new member's valid confirmation."""
        return self._result


def _old_fingerprint(old: OldKeyInfo) -> bytes:
    tr = Transcript(b"reshare-old-key").append("pk", old.public_key).append("t", old.threshold)
    tr.append("epoch", old.epoch).append("chain", old.chain_code).append("rid", old.rid)
    for j in sorted(old.eval_points):
        tr.append("j", j).append("x", old.eval_points[j]).append("X", old.public_shares[j])
    return tr.digest()
