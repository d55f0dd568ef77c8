"""t-of-n distributed key generation (CGGMP keygen with Feldman VSS).

Each party i:
  Round 1 (broadcast, echoed): a hash of the session's parameters (parties, t and, for a key
    bound to a pooled aux-info, that aux-info's fingerprint) — a party given other parameters
    stops the session without blame — and: samples f_i of degree t-1, its Feldman vector
    F_i = (g^{a_i0}, ..., g^{a_i,t-1}) (exactly t entries), rid_i, a chain-code contribution
    c_i, u_i, and a Schnorr commitment A_i = g^{α_i}; sends V_i = H(sid, i, F_i, A_i, rid_i, c_i, u_i).
  Round 2 (broadcast + direct): reveals (F_i, A_i, rid_i, c_i, u_i); sends σ_{i,j} = f_i(x_j) to
    each j (direct; the node encrypts direct payloads to the recipient's transport key).
  Round 3 (broadcast): after checking every reveal against V_j and every share against F_j,
    sets rid = ⊕ rid_j and proves knowledge of a_i0 with Π^sch (committed A_i, context rid).
  Output: x_i = Σ_j σ_{j,i}; X_k = Σ_j F_j(x_k); public key Σ_j F_j[0]; chain code ⊕ c_j.

Evaluation points x_j = H(sid, j) are nonzero and distinct mod q and never equal to an index.
Every failure names every party whose signed message proves it (one ``Round`` class per
round: ``KeygenRound1`` .. ``KeygenRound3``).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from appliance.errors import ParameterError, ProofError
from appliance.tss.group import Q, RNG, Point, hash_to_scalar, point_sum, poly_commit_eval, poly_eval, random_scalar
from appliance.tss.keyshare import KeyShare
from appliance.tss.protocol import (
    Done,
    MessageSigner,
    MessageVerifier,
    Misbehaviour,
    Party,
    ProtocolAbort,
    Round,
    SetupCommit,
    setup_hash,
    xor_bytes,
)
from appliance.tss.transcript import ProofContext, Transcript
from appliance.tss.zk import sch

KAPPA_BYTES = 32


def evaluation_points(session_id: bytes, parties: list[int]) -> dict[int, int]:
    """x_j = H(sid, j) mod q, checked nonzero, distinct and apart from the indices."""
    points = {j: hash_to_scalar(b"appliance/eval-point", session_id, j.to_bytes(4, "big"))
              for j in parties}
    values = list(points.values())
    if len(set(values)) != len(values) or any(v == 0 or v in parties for v in values):
        raise ParameterError("evaluation points collide; choose another session id")
    return points


@dataclass(frozen=True)
class KeygenReveal:
    F: list[Point]
    A: Point
    rid: bytes
    chain: bytes
    u: bytes


@dataclass(frozen=True)
class KeygenShare:
    sigma: int


@dataclass(frozen=True)
class KeygenProof:
    psi: sch.SchProof


def _commitment(sid: bytes, i: int, r: KeygenReveal) -> bytes:
    tr = Transcript(b"keygen-commit").append("sid", sid).append("i", i)
    tr.append_many(F=r.F, A=r.A, rid=r.rid, chain=r.chain, u=r.u)
    return tr.digest()


class KeygenParty(Party):
    PROTOCOL = "keygen"

    def __init__(self, session_id: bytes, me: int, parties: list[int], threshold: int,
                 signer: MessageSigner, verifier: MessageVerifier, rng: RNG, *,
                 aux_fingerprint: bytes | None = None) -> None:
        super().__init__(session_id, me, parties, signer, verifier, rng)
        if not 1 <= threshold <= len(self.parties):
            raise ParameterError("threshold must be between 1 and the number of parties")
        self.t = threshold
        # the pooled aux-info each party will bind its share to is a session parameter: a
        # coordinator naming different aux-info to different parties is stopped at the echo
        extra = {} if aux_fingerprint is None else {"aux": bytes(aux_fingerprint)}
        self.setup = setup_hash(self.PROTOCOL, parties=self.parties, threshold=threshold, **extra)
        self.points = evaluation_points(self.session_id, self.parties)

    def ctx(self, prover: int, rid: bytes) -> ProofContext:
        return ProofContext(self.session_id, prover, rid, b"keygen")

    def _first_round(self) -> "KeygenRound1":
        rng = self.rng
        coeffs = [random_scalar(rng) for _ in range(self.t)]
        sch_pre = sch.commit(rng)
        reveal = KeygenReveal(
            F=[Point.generator_mul(a) for a in coeffs],
            A=sch_pre[1].A,
            rid=rng.token_bytes(KAPPA_BYTES),
            chain=rng.token_bytes(32),
            u=rng.token_bytes(KAPPA_BYTES),
        )
        return KeygenRound1(self, coeffs, sch_pre, reveal)


@dataclass(eq=False)
class KeygenRound1(Round):
    """Commit to the reveal (and the session parameters)."""

    broadcast = SetupCommit
    echo = True
    party: KeygenParty
    coeffs: list[int]
    sch_pre: tuple[sch.SchSecret, sch.SchCommitment]
    reveal: KeygenReveal

    def __repr__(self) -> str:
        return "KeygenRound1(<secret>)"

    def send(self):
        p = self.party
        return SetupCommit(p.setup, _commitment(p.session_id, p.me, self.reveal)), {}

    def agree(self, broadcasts: dict[int, SetupCommit]) -> None:
        self.party.require_same_setup(self.party.setup, {j: m.setup for j, m in broadcasts.items()})

    def finish(self, broadcasts: dict[int, SetupCommit], directs: dict) -> Round:
        return self.next(coeffs=self.coeffs, sch_pre=self.sch_pre, reveal=self.reveal,
                         commits={j: m.V for j, m in broadcasts.items()})


@dataclass(eq=False)
class KeygenRound2(Round):
    """Reveal; send every party its share of f_i; check reveals against commitments and
    shares against the Feldman vectors."""

    broadcast = KeygenReveal
    direct = KeygenShare
    party: KeygenParty
    coeffs: list[int]
    sch_pre: tuple[sch.SchSecret, sch.SchCommitment]
    reveal: KeygenReveal
    commits: dict[int, bytes]

    def __repr__(self) -> str:
        return "KeygenRound2(<secret>)"

    def send(self):
        p = self.party
        return self.reveal, {j: KeygenShare(poly_eval(self.coeffs, p.points[j])) for j in p.others}

    def check(self, j: int, rev: KeygenReveal, share: KeygenShare) -> None:
        p = self.party
        if _commitment(p.session_id, j, rev) != self.commits[j]:
            raise Misbehaviour("reveal does not match its commitment")
        if len(rev.F) != p.t:
            raise Misbehaviour("Feldman vector must have exactly t entries")
        if len(rev.rid) != KAPPA_BYTES or len(rev.chain) != 32 or len(rev.u) != KAPPA_BYTES:
            raise Misbehaviour("reveal fields have the wrong sizes")
        if not 0 <= share.sigma < Q:
            raise Misbehaviour("share is not a scalar")
        if Point.generator_mul(share.sigma) != poly_commit_eval(rev.F, p.points[p.me]):
            raise Misbehaviour("share does not match the Feldman commitments")

    def finish(self, broadcasts: dict[int, KeygenReveal], directs: dict[int, KeygenShare]) -> Round:
        p = self.party
        reveals = {p.me: self.reveal, **broadcasts}
        shares = {j: d.sigma for j, d in directs.items()}
        shares[p.me] = poly_eval(self.coeffs, p.points[p.me])
        rid = xor_bytes(*(rev.rid for _, rev in sorted(reveals.items())))
        return self.next(secret=self.coeffs[0], sch_pre=self.sch_pre, reveals=reveals,
                         shares=shares, rid=rid)


@dataclass(eq=False)
class KeygenRound3(Round):
    """Prove knowledge of a_i0 with Π^sch (committed A_i, context rid); output the share."""

    broadcast = KeygenProof
    party: KeygenParty
    secret: int
    sch_pre: tuple[sch.SchSecret, sch.SchCommitment]
    reveals: dict[int, KeygenReveal]
    shares: dict[int, int]
    rid: bytes

    def __repr__(self) -> str:
        return "KeygenRound3(<secret>)"

    def send(self):
        p = self.party
        F0 = self.reveals[p.me].F[0]
        return KeygenProof(sch.prove(p.ctx(p.me, self.rid), F0, self.secret, precommitted=self.sch_pre)), {}

    def check(self, j: int, msg: KeygenProof, direct: None) -> None:
        try:
            sch.verify(self.party.ctx(j, self.rid), self.reveals[j].F[0], msg.psi)
        except ProofError as exc:
            raise Misbehaviour(f"Π^sch for the secret contribution failed: {exc}") from exc
        if msg.psi.A != self.reveals[j].A:
            raise Misbehaviour("Π^sch commitment differs from the committed one")

    def finish(self, broadcasts: dict, directs: dict) -> Done:
        p = self.party
        x_i = sum(self.shares.values()) % Q
        public_shares = {
            k: point_sum(poly_commit_eval(rev.F, p.points[k]) for rev in self.reveals.values())
            for k in p.parties
        }
        if Point.generator_mul(x_i) != public_shares[p.me]:
            raise ProtocolAbort("internal: own share does not match its public share")
        public_key = point_sum(rev.F[0] for rev in self.reveals.values())
        chain = xor_bytes(*(rev.chain for _, rev in sorted(self.reveals.items())))
        return Done(KeyShare(
            index=p.me, threshold=p.t, eval_points=dict(p.points), secret_share=x_i,
            public_shares=public_shares, public_key_point=public_key, chain_code=chain,
            rid=self.rid, epoch=0,
        ))


KeygenParty.ROUNDS = {1: KeygenRound1, 2: KeygenRound2, 3: KeygenRound3}


def new_session_id() -> bytes:
    return secrets.token_bytes(16)
