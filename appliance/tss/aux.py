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

from appliance.errors import EncodingError, ParameterError, ProofError
from appliance.tss.group import Q, RNG, Point, point_sum, poly_eval, random_scalar
from appliance.tss.keyshare import AuxSecret, KeyShare, PartyAux, PooledAux
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
    """Aux-info for a key share; with ``refresh=True`` also re-shares zero (new epoch). Made
    with :meth:`pooled`, the same session without a key: aux-info for a committee, made ahead
    of demand, output a :class:`PooledAux` that a later DKG's share is bound to."""

    PROTOCOL = "aux"

    def __init__(self, session_id: bytes, share: KeyShare | None, keys: AuxKeys, signer: MessageSigner,
                 verifier: MessageVerifier, rng: RNG, *, refresh: bool = False,
                 committee: tuple[int, list[int]] | None = None) -> None:
        me, parties = (share.index, share.participants) if share is not None else committee  # type: ignore[misc]
        super().__init__(session_id, me, parties, signer, verifier, rng)
        if share is None and refresh:
            raise ParameterError("a refresh needs the key share")
        self.share, self.keys, self.refresh = share, keys, refresh
        self.key_rid = share.rid if share is not None else b""
        self.bits = int(keys.paillier.N.bit_length())
        self.params = security_params(self.bits)
        key = share.public_fingerprint() if share is not None else b"pooled: no key"
        self.setup = setup_hash(self.PROTOCOL, parties=self.parties, bits=self.bits, refresh=refresh, key=key)

    @classmethod
    def pooled(cls, session_id: bytes, me: int, parties: list[int], keys: AuxKeys, signer: MessageSigner,
               verifier: MessageVerifier, rng: RNG) -> "AuxParty":
        """The key-independent session (no refresh shares, no key rid in the contexts)."""
        return cls(session_id, None, keys, signer, verifier, rng, committee=(me, list(parties)))

    def ctx(self, prover: int, rid: bytes) -> ProofContext:
        return ProofContext(self.session_id, prover, rid, b"aux")

    def _first_round(self) -> "AuxRound1":
        rng = self.rng
        coeffs = [0] + [random_scalar(rng) for _ in range(self.share.threshold - 1)] \
            if self.refresh and self.share is not None else [0]
        rp = self.keys.ring_pedersen.params
        fields = dict(
            N=int(self.keys.paillier.N), Nhat=int(rp.N), s=int(rp.s), t=int(rp.t),
            C=[Point.generator_mul(a) for a in coeffs[1:]],
            rid=rng.token_bytes(KAPPA_BYTES), u=rng.token_bytes(KAPPA_BYTES),
        )
        return AuxRound1(self, coeffs, fields)


@dataclass(eq=False)
class AuxRound1(Round):
    """Commit to the reveal (and the session parameters)."""

    broadcast = SetupCommit
    echo = True
    party: AuxParty
    coeffs: list[int]
    fields: dict

    def __repr__(self) -> str:
        return "AuxRound1(<secret>)"

    def send(self):
        p = self.party
        return SetupCommit(p.setup, _commitment(p.session_id, p.me, self.fields)), {}

    def agree(self, broadcasts: dict[int, SetupCommit]) -> None:
        self.party.require_same_setup(self.party.setup, {j: m.setup for j, m in broadcasts.items()})

    def finish(self, broadcasts: dict[int, SetupCommit], directs: dict) -> Round:
        return self.next(coeffs=self.coeffs, fields=self.fields,
                         commits={j: m.V for j, m in broadcasts.items()})


@dataclass(eq=False)
class AuxRound2(Round):
    """Reveal with Π^prm; refresh shares to every party; check every reveal and share."""

    broadcast = AuxReveal
    direct = RefreshShare
    party: AuxParty
    coeffs: list[int]
    fields: dict
    commits: dict[int, bytes]
    sent: AuxReveal | None = None

    def __repr__(self) -> str:
        return "AuxRound2(<secret>)"

    def send(self):
        p = self.party
        rp = p.keys.ring_pedersen
        psi = prm.prove(p.ctx(p.me, p.key_rid), rp.params, rp, p.params, p.rng)
        self.sent = AuxReveal(psi_prm=psi, **self.fields)
        if p.share is None:  # pooled: no key, nothing re-shared
            return self.sent, {j: RefreshShare(0) for j in p.others}
        pts = p.share.eval_points
        return self.sent, {j: RefreshShare(poly_eval(self.coeffs, pts[j])) for j in p.others}

    def check(self, j: int, rev: AuxReveal, share: RefreshShare) -> None:
        p = self.party
        if _commitment(p.session_id, j, vars(rev)) != self.commits[j]:
            raise Misbehaviour("reveal does not match its commitment")
        if len(rev.rid) != KAPPA_BYTES or len(rev.u) != KAPPA_BYTES:
            raise Misbehaviour("reveal fields have the wrong sizes")
        if rev.N.bit_length() != p.bits or rev.Nhat.bit_length() != p.bits:
            raise Misbehaviour(f"moduli must be exactly {p.bits} bits")
        if rev.N == rev.Nhat or {rev.N, rev.Nhat} & {self.fields["N"], self.fields["Nhat"]}:
            raise Misbehaviour("reused a modulus")
        try:
            _rp(rev).check()
            prm.verify(p.ctx(j, p.key_rid), _rp(rev), rev.psi_prm, p.params)
        except (EncodingError, ProofError) as exc:
            raise Misbehaviour(f"ring-Pedersen parameters rejected: {exc}") from exc
        sigma = share.sigma
        if p.refresh and p.share is not None:
            if len(rev.C) != p.share.threshold - 1:
                raise Misbehaviour("refresh commitments must have exactly t-1 entries")
            if not 0 <= sigma < Q:
                raise Misbehaviour("refresh share is not a scalar")
            if Point.generator_mul(sigma) != _eval_zero_poly(rev.C, p.share.eval_points[p.me]):
                raise Misbehaviour("refresh share does not match its commitments")
        elif rev.C or sigma != 0:
            raise Misbehaviour("sent refresh data in an aux-only session")

    def finish(self, broadcasts: dict[int, AuxReveal], directs: dict[int, RefreshShare]) -> Round:
        p = self.party
        # moduli were committed before any was revealed, so two parties revealing the same
        # one both broke the protocol (one copied, the other told it): both are named
        owners: dict[int, set[int]] = {}
        for j, rev in broadcasts.items():
            for n in (rev.N, rev.Nhat):
                owners.setdefault(n, set()).add(j)
        shared = sorted({j for js in owners.values() if len(js) > 1 for j in js})
        if shared:
            raise ProtocolAbort("reused a modulus", shared)
        assert self.sent is not None
        reveals = {p.me: self.sent, **broadcasts}
        rid = xor_bytes(*([p.key_rid] if p.key_rid else []), *(rev.rid for _, rev in sorted(reveals.items())))
        shares = {j: d.sigma for j, d in directs.items()}
        return self.next(coeffs=self.coeffs, reveals=reveals, shares=shares, rid=rid)


@dataclass(eq=False)
class AuxRound3(Round):
    """Π^mod for N_i (broadcast) and Π^fac under each j's setup (direct to j); output."""

    broadcast = AuxModProof
    direct = AuxFacProof
    party: AuxParty
    coeffs: list[int]
    reveals: dict[int, AuxReveal]
    shares: dict[int, int]
    rid: bytes

    def __repr__(self) -> str:
        return "AuxRound3(<secret>)"

    def send(self):
        p = self.party
        ctx = p.ctx(p.me, self.rid)
        sk = p.keys.paillier
        psi_mod = mod.prove(ctx, sk.public, sk, p.params, p.rng)
        directs = {j: AuxFacProof(fac.prove(ctx, sk.public, sk, _rp(self.reveals[j]), p.params, p.rng))
                   for j in p.others}
        return AuxModProof(psi_mod), directs

    def check(self, j: int, msg: AuxModProof, direct: AuxFacProof) -> None:
        p = self.party
        ctx = p.ctx(j, self.rid)
        own_rp = p.keys.ring_pedersen
        try:
            mod.verify(ctx, _paillier(self.reveals[j]), msg.psi_mod, p.params)
        except ProofError as exc:
            raise Misbehaviour(f"Π^mod failed: {exc}") from exc
        try:
            fac.verify(ctx, _paillier(self.reveals[j]), direct.psi_fac, own_rp.params, p.params,
                       setup_secret=own_rp)
        except ProofError as exc:
            raise Misbehaviour(f"Π^fac failed: {exc}") from exc

    def finish(self, broadcasts: dict, directs: dict) -> Done:
        p = self.party
        aux = {j: PartyAux(rev.N, rev.Nhat, rev.s, rev.t) for j, rev in self.reveals.items()}
        keys = p.keys
        secret = AuxSecret(int(keys.paillier.p), int(keys.paillier.q), int(keys.ring_pedersen.p),
                           int(keys.ring_pedersen.q), int(keys.ring_pedersen.lam))
        share = p.share
        if share is None:  # pooled aux-info: bound to a key's share later (PooledAux.bind)
            return Done(PooledAux(p.me, list(p.parties), p.bits, aux, secret, self.rid))
        if p.refresh:
            pts = share.eval_points
            own = poly_eval(self.coeffs, pts[p.me])
            x_new = (share.secret_share + own + sum(self.shares.values())) % Q
            publics = {
                k: share.public_shares[k] + point_sum(_eval_zero_poly(rev.C, pts[k]) for rev in self.reveals.values())
                for k in share.participants
            }
            if Point.generator_mul(x_new) != publics[p.me]:
                raise ProtocolAbort("internal: refreshed share does not match its public share")
            share = replace(share, secret_share=x_new, public_shares=publics, epoch=share.epoch + 1)
        return Done(replace(share, rid=self.rid).with_aux(aux, secret, p.bits))


AuxParty.ROUNDS = {1: AuxRound1, 2: AuxRound2, 3: AuxRound3}


def _rp(rev: AuxReveal) -> RingPedersenParams:
    return PartyAux(rev.N, rev.Nhat, rev.s, rev.t).ring_pedersen


def _paillier(rev: AuxReveal) -> PaillierPublicKey:
    return PartyAux(rev.N, rev.Nhat, rev.s, rev.t).paillier


def _eval_zero_poly(C: list[Point], x: int) -> Point:
    """Σ_{k>=1} x^k·C_k (the constant term is zero)."""
    return point_sum(C[k - 1] * pow(x, k, Q) for k in range(1, len(C) + 1))
