"""Aux-info and key refresh (CGGMP 2024 revision, Fig. 7, threshold variant).

Each party i:
  Before round 1: a Paillier key N_i = p_i q_i (Blum primes) and ring-Pedersen parameters
    (N̂_i, s_i, t_i) from two safe primes; for a refresh, a polynomial f_i of degree t-1 with
    f_i(0) = 0 and its Feldman commitments C_i = (g^{a_i1}, ..., g^{a_i,t-1}) — the constant
    term's commitment would be the point at infinity, so it is left out.
  Round 1 (broadcast, echoed): a hash of the session parameters (parties, modulus size,
    refresh or not, the key's public state; a mismatch stops without blame) and V_i = H(sid, i, N_i, N̂_i, s_i, t_i, C_i, rid_i, u_i).
  Round 2 (broadcast + direct): the reveal (N_i, N̂_i, s_i, t_i, C_i, rid_i, u_i) with
    Π^prm for (N̂_i, s_i, t_i); to each j the refresh share f_i(x_j) (direct; the node encrypts
    direct payloads to the recipient's transport key).
  Round 3 (broadcast + direct): with rid = ⊕ rid_j (and the key's rid) in every context:
    Π^mod for N_i (broadcast) and Π^fac for N_i under j's setup (direct to j).
  Output: everyone's (N_j, N̂_j, s_j, t_j); for a refresh the new share x_i + Σ_j f_j(x_i), the
    new public shares X_k + Σ_j C_j(x_k), the same public key, epoch + 1.

Checks: every reveal matches its commitment; moduli have exactly the configured size and are
pairwise distinct; s, t are non-trivial units; every proof verifies; every refresh share matches
its commitments. Failures name the party whose signed message shows them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from appliance.errors import ProofError
from appliance.tss.group import Q, RNG, Point, point_sum, poly_eval, random_scalar
from appliance.tss.keyshare import AuxSecret, KeyShare, PartyAux
from appliance.tss.paillier import (
    PaillierPublicKey,
    PaillierSecretKey,
    RingPedersenParams,
    RingPedersenSecret,
    generate_paillier,
    generate_ring_pedersen,
)
from appliance.tss.params import security_params
from appliance.tss.primes import PrimeSource
from appliance.tss.protocol import MessageSigner, MessageVerifier, Party, ProtocolAbort, RoundSpec, SetupCommit, setup_hash, xor_bytes
from appliance.tss.transcript import ProofContext, Transcript
from appliance.tss.zk import fac, mod, prm

KAPPA_BYTES = 32


@dataclass(frozen=True)
class AuxReveal:
    N: int
    Nhat: int
    s: int
    t: int
    C: list[Point]
    rid: bytes
    u: bytes
    psi_prm: prm.PrmProof


@dataclass(frozen=True)
class RefreshShare:
    sigma: int


@dataclass(frozen=True)
class AuxModProof:
    psi_mod: mod.ModProof


@dataclass(frozen=True)
class AuxFacProof:
    psi_fac: fac.FacProof


COMMITTED_FIELDS = ("N", "Nhat", "s", "t", "C", "rid", "u")


def _commitment(sid: bytes, i: int, fields: dict) -> bytes:
    """V_i over everything revealed in round 2 but the Π^prm proof."""
    tr = Transcript(b"aux-commit").append("sid", sid).append("i", i)
    for name in COMMITTED_FIELDS:
        tr.append(name, fields[name])
    return tr.digest()


@dataclass(frozen=True)
class AuxKeys:
    """A party's freshly generated aux secrets (made before the session, e.g. off the event loop)."""

    paillier: PaillierSecretKey
    ring_pedersen: RingPedersenSecret

    def __repr__(self) -> str:
        return "AuxKeys(<hidden>)"


def generate_aux_keys(bits: int, primes: PrimeSource, rng: RNG) -> AuxKeys:
    return AuxKeys(generate_paillier(bits, primes), generate_ring_pedersen(bits, primes, rng))


class AuxParty(Party):
    """Aux-info for a key share; with ``refresh=True`` also re-shares zero (new epoch)."""

    PROTOCOL = "aux"
    ROUNDS = {
        1: RoundSpec(broadcast=SetupCommit, echo=True),
        2: RoundSpec(broadcast=AuxReveal, direct=RefreshShare),
        3: RoundSpec(broadcast=AuxModProof, direct=AuxFacProof),
    }

    def __init__(self, session_id: bytes, share: KeyShare, keys: AuxKeys, signer: MessageSigner,
                 verifier: MessageVerifier, rng: RNG, *, refresh: bool = False) -> None:
        super().__init__(session_id, share.index, share.participants, signer, verifier, rng)
        self.share, self.keys, self.refresh = share, keys, refresh
        self.bits = int(keys.paillier.N.bit_length())
        self.params = security_params(self.bits)
        self._setup = setup_hash(self.PROTOCOL, parties=self.parties, bits=self.bits, refresh=refresh,
                                 key=share.public_fingerprint())
        t = share.threshold
        self._coeffs = [0] + [random_scalar(rng) for _ in range(t - 1)] if refresh else [0]
        rp = keys.ring_pedersen.params
        self._reveal_fields = dict(
            N=int(keys.paillier.N), Nhat=int(rp.N), s=int(rp.s), t=int(rp.t),
            C=[Point.generator_mul(a) for a in self._coeffs[1:]],
            rid=rng.token_bytes(KAPPA_BYTES), u=rng.token_bytes(KAPPA_BYTES),
        )
        self._commits: dict[int, bytes] = {}
        self._reveals: dict[int, AuxReveal] = {}
        self._shares: dict[int, int] = {}
        self._rid = b""

    def _ctx(self, prover: int, with_rid: bool) -> ProofContext:
        return ProofContext(self.session_id, prover, self._rid if with_rid else self.share.rid, b"aux")

    def _make_round(self, r: int):
        rng = self.rng
        if r == 1:
            return SetupCommit(self._setup, _commitment(self.session_id, self.me, self._reveal_fields)), {}
        if r == 2:
            rp = self.keys.ring_pedersen
            psi = prm.prove(self._ctx(self.me, False), rp.params, rp, self.params, rng)
            reveal = AuxReveal(psi_prm=psi, **self._reveal_fields)
            self._reveals[self.me] = reveal
            pts = self.share.eval_points
            return reveal, {j: RefreshShare(poly_eval(self._coeffs, pts[j])) for j in self.others}
        ctx = self._ctx(self.me, True)
        sk = self.keys.paillier
        psi_mod = mod.prove(ctx, sk.public, sk, self.params, rng)
        directs = {
            j: AuxFacProof(fac.prove(ctx, sk.public, sk, _rp(self._reveals[j]), self.params, rng))
            for j in self.others
        }
        return AuxModProof(psi_mod), directs

    def _finish_round(self, r: int, bcast: dict, direct: dict) -> None:
        if r == 1:
            self.require_same_setup(self._setup, {j: m.setup for j, m in bcast.items()})
            self._commits = {j: m.V for j, m in bcast.items()}
            return
        if r == 2:
            self._finish_reveals(bcast, direct)
            return
        own_rp = self.keys.ring_pedersen
        for j in self.others:
            ctx = self._ctx(j, True)
            try:
                mod.verify(ctx, _paillier(self._reveals[j]), bcast[j].psi_mod, self.params)
            except ProofError as exc:
                raise self.blame(f"Π^mod failed: {exc}", j) from exc
            try:
                fac.verify(ctx, _paillier(self._reveals[j]), direct[j].psi_fac, own_rp.params, self.params,
                           setup_secret=own_rp)
            except ProofError as exc:
                raise self.blame(f"Π^fac failed: {exc}", j) from exc
        self.result = self._output()
        self.done = True

    def _finish_reveals(self, bcast: dict, direct: dict) -> None:
        seen: set[int] = {self._reveals[self.me].N, self._reveals[self.me].Nhat}
        pts = self.share.eval_points
        for j in self.others:
            rev: AuxReveal = bcast[j]
            if _commitment(self.session_id, j, vars(rev)) != self._commits[j]:
                raise self.blame("reveal does not match its commitment", j)
            if len(rev.rid) != KAPPA_BYTES or len(rev.u) != KAPPA_BYTES:
                raise self.blame("reveal fields have the wrong sizes", j)
            if rev.N.bit_length() != self.bits or rev.Nhat.bit_length() != self.bits:
                raise self.blame(f"moduli must be exactly {self.bits} bits", j)
            if rev.N in seen or rev.Nhat in seen or rev.N == rev.Nhat:
                raise self.blame("reused a modulus", j)
            seen |= {rev.N, rev.Nhat}
            try:
                _rp(rev).check()
                prm.verify(self._ctx(j, False), _rp(rev), rev.psi_prm, self.params)
            except Exception as exc:
                raise self.blame(f"ring-Pedersen parameters rejected: {exc}", j) from exc
            sigma = direct[j].sigma
            if self.refresh:
                if len(rev.C) != self.share.threshold - 1:
                    raise self.blame("refresh commitments must have exactly t-1 entries", j)
                if not 0 <= sigma < Q:
                    raise self.blame("refresh share is not a scalar", j)
                expected = _eval_zero_poly(rev.C, pts[self.me])
                if Point.generator_mul(sigma) != expected:
                    raise self.blame("refresh share does not match its commitments", j)
            elif rev.C or sigma != 0:
                raise self.blame("sent refresh data in an aux-only session", j)
            self._reveals[j] = rev
            self._shares[j] = sigma
        self._rid = xor_bytes(self.share.rid, *(rev.rid for rev in self._reveals.values()))

    def _output(self) -> KeyShare:
        aux = {j: PartyAux(rev.N, rev.Nhat, rev.s, rev.t) for j, rev in self._reveals.items()}
        secret = AuxSecret(int(self.keys.paillier.p), int(self.keys.paillier.q),
                           int(self.keys.ring_pedersen.p), int(self.keys.ring_pedersen.q),
                           int(self.keys.ring_pedersen.lam))
        share = self.share
        if self.refresh:
            pts = share.eval_points
            own = poly_eval(self._coeffs, pts[self.me])
            x_new = (share.secret_share + own + sum(self._shares.values())) % Q
            publics = {
                k: share.public_shares[k] + point_sum(_eval_zero_poly(rev.C, pts[k]) for rev in self._reveals.values())
                for k in share.participants
            }
            if Point.generator_mul(x_new) != publics[self.me]:
                raise ProtocolAbort("internal: refreshed share does not match its public share")
            share = replace(share, secret_share=x_new, public_shares=publics, epoch=share.epoch + 1)
        return replace(share, rid=self._rid).with_aux(aux, secret, self.bits)


def _rp(rev: AuxReveal) -> RingPedersenParams:
    return PartyAux(rev.N, rev.Nhat, rev.s, rev.t).ring_pedersen


def _paillier(rev: AuxReveal) -> PaillierPublicKey:
    return PartyAux(rev.N, rev.Nhat, rev.s, rev.t).paillier


def _eval_zero_poly(C: list[Point], x: int) -> Point:
    """Σ_{k>=1} x^k·C_k (the constant term is zero)."""
    return point_sum(C[k - 1] * pow(x, k, Q) for k in range(1, len(C) + 1))
