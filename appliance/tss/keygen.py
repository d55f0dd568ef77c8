"""t-of-n distributed key generation (CGGMP keygen with Feldman VSS).

Each party i:
  Round 1 (broadcast, echoed): a hash of the session's parameters (parties, t) — a party
    given other parameters stops the session without blame — and: samples f_i of degree t-1, its Feldman vector
    F_i = (g^{a_i0}, ..., g^{a_i,t-1}) (exactly t entries), rid_i, a chain-code contribution
    c_i, u_i, and a Schnorr commitment A_i = g^{α_i}; sends V_i = H(sid, i, F_i, A_i, rid_i, c_i, u_i).
  Round 2 (broadcast + direct): reveals (F_i, A_i, rid_i, c_i, u_i); sends σ_{i,j} = f_i(x_j) to
    each j (direct; the node encrypts direct payloads to the recipient's transport key).
  Round 3 (broadcast): after checking every reveal against V_j and every share against F_j,
    sets rid = ⊕ rid_j and proves knowledge of a_i0 with Π^sch (committed A_i, context rid).
  Output: x_i = Σ_j σ_{j,i}; X_k = Σ_j F_j(x_k); public key Σ_j F_j[0]; chain code ⊕ c_j.

Evaluation points x_j = H(sid, j) are nonzero and distinct mod q and never equal to an index.
Every failure names the party whose signed message proves it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from appliance.tss.group import Q, RNG, Point, hash_to_scalar, point_sum, poly_commit_eval, poly_eval, random_scalar
from appliance.tss.keyshare import KeyShare
from appliance.tss.protocol import MessageSigner, MessageVerifier, Party, ProtocolAbort, RoundSpec, SetupCommit, setup_hash, xor_bytes
from appliance.tss.transcript import ProofContext, Transcript
from appliance.tss.zk import sch

KAPPA_BYTES = 32


def evaluation_points(session_id: bytes, parties: list[int]) -> dict[int, int]:
    """x_j = H(sid, j) mod q, checked nonzero, distinct and apart from the indices."""
    points = {j: hash_to_scalar(b"appliance/eval-point", session_id, j.to_bytes(4, "big"))
              for j in parties}
    values = list(points.values())
    if len(set(values)) != len(values) or any(v == 0 or v in parties for v in values):
        raise ProtocolAbort("evaluation points collide; choose another session id")
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
    ROUNDS = {
        1: RoundSpec(broadcast=SetupCommit, echo=True),
        2: RoundSpec(broadcast=KeygenReveal, direct=KeygenShare),
        3: RoundSpec(broadcast=KeygenProof),
    }

    def __init__(self, session_id: bytes, me: int, parties: list[int], threshold: int,
                 signer: MessageSigner, verifier: MessageVerifier, rng: RNG) -> None:
        super().__init__(session_id, me, parties, signer, verifier, rng)
        if not 1 <= threshold <= len(self.parties):
            raise ProtocolAbort("threshold must be between 1 and the number of parties")
        self.t = threshold
        self._setup = setup_hash(self.PROTOCOL, parties=self.parties, threshold=threshold)
        self.points = evaluation_points(self.session_id, self.parties)
        self._coeffs = [random_scalar(rng) for _ in range(threshold)]
        self._sch = sch.commit(rng)
        self._reveal = KeygenReveal(
            F=[Point.generator_mul(a) for a in self._coeffs],
            A=self._sch[1].A,
            rid=rng.token_bytes(KAPPA_BYTES),
            chain=rng.token_bytes(32),
            u=rng.token_bytes(KAPPA_BYTES),
        )
        self._commits: dict[int, bytes] = {}
        self._reveals: dict[int, KeygenReveal] = {me: self._reveal}
        self._shares: dict[int, int] = {}
        self._rid = b""

    def _ctx(self, prover: int) -> ProofContext:
        return ProofContext(self.session_id, prover, self._rid, b"keygen")

    def _make_round(self, r: int):
        if r == 1:
            return SetupCommit(self._setup, _commitment(self.session_id, self.me, self._reveal)), {}
        if r == 2:
            shares = {j: KeygenShare(poly_eval(self._coeffs, self.points[j])) for j in self.others}
            return self._reveal, shares
        psi = sch.prove(self._ctx(self.me), self._reveal.F[0], self._coeffs[0], precommitted=self._sch)
        return KeygenProof(psi), {}

    def _finish_round(self, r: int, bcast: dict, direct: dict) -> None:
        if r == 1:
            self.require_same_setup(self._setup, {j: m.setup for j, m in bcast.items()})
            self._commits = {j: m.V for j, m in bcast.items()}
            return
        if r == 2:
            for j in self.others:
                rev: KeygenReveal = bcast[j]
                if _commitment(self.session_id, j, rev) != self._commits[j]:
                    raise self.blame("reveal does not match its commitment", j)
                if len(rev.F) != self.t:
                    raise self.blame("Feldman vector must have exactly t entries", j)
                if len(rev.rid) != KAPPA_BYTES or len(rev.chain) != 32 or len(rev.u) != KAPPA_BYTES:
                    raise self.blame("reveal fields have the wrong sizes", j)
                sigma = direct[j].sigma
                if not 0 <= sigma < Q:
                    raise self.blame("share is not a scalar", j)
                if Point.generator_mul(sigma) != poly_commit_eval(rev.F, self.points[self.me]):
                    raise self.blame("share does not match the Feldman commitments", j)
                self._reveals[j] = rev
                self._shares[j] = sigma
            self._shares[self.me] = poly_eval(self._coeffs, self.points[self.me])
            self._rid = xor_bytes(*(rev.rid for rev in self._reveals.values()))
            return
        for j in self.others:
            try:
                sch.verify(self._ctx(j), self._reveals[j].F[0], bcast[j].psi)
            except Exception as exc:
                raise self.blame(f"Π^sch for the secret contribution failed: {exc}", j) from exc
            if bcast[j].psi.A != self._reveals[j].A:
                raise self.blame("Π^sch commitment differs from the committed one", j)
        self.result = self._output()
        self.done = True

    def _output(self) -> KeyShare:
        x_i = sum(self._shares.values()) % Q
        public_shares = {
            k: point_sum(poly_commit_eval(rev.F, self.points[k]) for rev in self._reveals.values())
            for k in self.parties
        }
        if Point.generator_mul(x_i) != public_shares[self.me]:
            raise ProtocolAbort("internal: own share does not match its public share")
        public_key = point_sum(rev.F[0] for rev in self._reveals.values())
        chain = xor_bytes(*(rev.chain for rev in self._reveals.values()))
        return KeyShare(
            index=self.me, threshold=self.t, eval_points=dict(self.points), secret_share=x_i,
            public_shares=public_shares, public_key_point=public_key, chain_code=chain,
            rid=self._rid, epoch=0,
        )


def new_session_id() -> bytes:
    return secrets.token_bytes(16)
