"""Three-round presigning (CGGMP 2024 revision, Fig. 8) for a signer set of size t.

Party i with additive share w_i = λ_i·x_i (W_i = g^{w_i}) over the signer set S:

Round 1 (broadcast, echoed): k_i, γ_i ← F_q; K_i = enc_i(k_i; ρ_i), G_i = enc_i(γ_i; ν_i);
  y_i, a_i, b_i ← F_q; Y_i = g^{y_i}; A_i1 = g^{a_i}, A_i2 = Y_i^{a_i} g^{k_i};
  B_i1 = g^{b_i}, B_i2 = Y_i^{b_i} g^{γ_i}.
  Direct to j: ψ0_{j,i} = Π^enc-elg(K_i; Y_i, A_i1, A_i2) and ψ1_{j,i} = Π^enc-elg(G_i; Y_i, B_i1, B_i2),
  both under j's ring-Pedersen setup.
Round 2 (broadcast, echoed): Γ_i = g^{γ_i} with Π^elog(B_i1, B_i2, Y_i; Γ_i, g);
  for every j: β_{i,j}, β̂_{i,j} ← ±2^ℓ'; D_{j,i} = K_j^{γ_i}·enc_j(−β_{i,j}), F_{j,i} = enc_i(β_{i,j}),
  D̂_{j,i} = K_j^{w_i}·enc_j(−β̂_{i,j}), F̂_{j,i} = enc_i(β̂_{i,j}) (all broadcast, so that the
  identification step can use them).
  Direct to j: ψ_{j,i} = Π^aff-g(K_j, D_{j,i}, F_{j,i}; Γ_i) and ψ̂_{j,i} = Π^aff-g(K_j, D̂_{j,i}, F̂_{j,i}; W_i)
  under j's setup.
Round 3 (broadcast, echoed): α_{i,j} = dec_i(D_{i,j}), α̂_{i,j} = dec_i(D̂_{i,j}); Γ = Σ Γ_j;
  δ_i = γ_i k_i + Σ_j (α_{i,j} + β_{i,j}), χ_i = w_i k_i + Σ_j (α̂_{i,j} + β̂_{i,j}) (mod q);
  Δ_i = Γ^{k_i}, S_i = Γ^{χ_i}, with Π^elog(A_i1, A_i2, Y_i; Δ_i, Γ).
Round 4 (broadcast): δ = Σ δ_j. If g^δ = Σ Δ_j and Σ S_j = X^δ (X the public key) the round
  is empty and the output is the presignature (Γ, k̃_i = k_i/δ, χ̃_i = χ_i/δ, and for every j
  Δ̃_j = Δ_j/δ, S̃_j = S_j/δ, with which anyone checks j's partial signature later).
  Otherwise every party proves its δ_i (or χ_i) with Π^dec and the well-formedness of each
  D_{j,i} (or D̂_{j,i}) it created with Π^aff-g* (Fig. 9), and whoever cannot is named.

Every proof is bound to (session id = presignature id, prover index, key rid); the key's public
state (epoch, public shares, aux data) is hashed into round 1 so parties holding different
epochs stop at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from appliance.errors import ApplianceError, EncodingError, ParameterError, ProofError
from appliance.tss import wire
from appliance.tss.group import G, Q, RNG, Point, inverse, point_sum, random_scalar
from appliance.tss.keyshare import KeyShare
from appliance.tss.paillier import PaillierPublicKey, pow_sec
from appliance.tss.params import security_params
from appliance.tss.protocol import (
    SEQUENTIAL,
    CheckExecutor,
    Done,
    MessageSigner,
    MessageVerifier,
    Misbehaviour,
    Party,
    ProtocolAbort,
    Round,
    setup_hash,
)
from appliance.tss.single_use import SingleUse
from appliance.tss.transcript import ProofContext
from appliance.tss.zk import aff_g, aff_g_star, dec, elog, enc_elg
from appliance.tss.zk._checks import sample_signed


class PresignatureSpent(ApplianceError):
    """A presignature was offered for a second signature."""

    code = "presignature_spent"


@dataclass(frozen=True)
class Presignature:
    """One party's part of a presignature. Secret (k̃_i, χ̃_i): seal it, use it once.

    Single use is enforced on the object: ``SignParty`` calls ``consume()``, and a second
    ``consume()`` on it or on a copy of it raises ``PresignatureSpent`` (two signatures from
    one presignature reveal the key: two linear equations in γ and x). A spent presignature
    is not serialized again. Bytes decoded by ``from_bytes`` make a new object: across a
    seal, the node's store (one HSM key per presignature, destroyed when spent) is the
    guard."""

    presig_id: bytes
    index: int
    signers: list[int]
    key_fingerprint: bytes
    epoch: int
    R: Point
    k_tilde: int
    chi_tilde: int
    Delta_tilde: dict[int, Point]
    S_tilde: dict[int, Point]
    _use: SingleUse = field(default_factory=lambda: SingleUse("a presignature"), init=False, repr=False, compare=False)

    def __repr__(self) -> str:
        return f"Presignature(id={self.presig_id.hex()}, index={self.index}, signers={self.signers})"

    @property
    def spent(self) -> bool:
        return self._use.spent

    def consume(self) -> None:
        """Mark this presignature used; PresignatureSpent if it (or a copy of it) was already."""
        if not self._use.claim():
            raise PresignatureSpent("this presignature was already used")

    def to_bytes(self) -> bytes:
        if self._use.spent:
            raise PresignatureSpent("a spent presignature is not serialized again")
        return wire.encode(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> "Presignature":
        return wire.decode(data, cls)


@dataclass(frozen=True)
class R1Bcast:
    key_state: bytes
    K: int
    G: int
    Y: Point
    A1: Point
    A2: Point
    B1: Point
    B2: Point


@dataclass(frozen=True)
class R1Direct:
    psi0: enc_elg.EncElgProof
    psi1: enc_elg.EncElgProof


@dataclass(frozen=True)
class R2Bcast:
    Gamma: Point
    psi_elog: elog.ElogProof
    D: dict[int, int]
    F: dict[int, int]
    D_hat: dict[int, int]
    F_hat: dict[int, int]


@dataclass(frozen=True)
class R2Direct:
    psi: aff_g.AffGProof
    psi_hat: aff_g.AffGProof


@dataclass(frozen=True)
class R3Bcast:
    delta: int
    Delta: Point
    S: Point
    psi_elog: elog.ElogProof


@dataclass(frozen=True)
class R4Bcast:
    """The outcome each party saw ("" when the presignature checks out, else "delta" or
    "chi") and, on failure, its identification proofs: Π^dec for its δ_i (or χ_i) and
    Π^aff-g* for every D_{j,i} (or D̂_{j,i}) it created."""

    outcome: str
    psi_dec: dec.DecProof | None
    psi_aff: dict[int, aff_g_star.AffGStarProof]


#: Largest signer set: an honest party's identification message (one Π^dec and one Π^aff-g*
#: per other signer, m = 128 repetitions each, about 360 KB apiece at 3072 bits) must fit the
#: payload limit, or receivers would reject it and blame an honest sender.
MAX_SIGNERS = 16


class PresignParty(Party):
    PROTOCOL = "presign"

    def __init__(self, presig_id: bytes, share: KeyShare, signers: list[int],
                 signer: MessageSigner, verifier: MessageVerifier, rng: RNG, *,
                 checks: CheckExecutor = SEQUENTIAL) -> None:
        """``checks`` runs each round's verification of the other signers' proofs (the bulk
        of a presign's CPU after one's own proving): a node passes a pool sized to its cores."""
        super().__init__(presig_id, share.index, signers, signer, verifier, rng, checks=checks)
        if not share.has_aux:
            raise ParameterError("the key share has no aux info yet")
        if len(self.parties) > MAX_SIGNERS:
            raise ParameterError(f"at most {MAX_SIGNERS} signers are supported")
        if len(self.parties) != share.threshold or not set(self.parties) <= set(share.participants):
            raise ParameterError("the signer set must be exactly `threshold` key participants")
        self.share = share
        self.params = security_params(share.paillier_bits)
        self.fingerprint = share.public_fingerprint()
        self.setup = setup_hash(self.PROTOCOL, key=self.fingerprint, signers=self.parties)
        self.sk = share.aux_secret.paillier()
        self.pk = self.sk.public
        self.rp_own = share.aux_secret.ring_pedersen(share.aux[self.me])
        self.pks = {j: share.aux[j].paillier for j in self.parties}
        self.rps = {j: share.aux[j].ring_pedersen for j in self.parties}
        self.w = share.secret_share * share.lagrange(self.parties) % Q
        self.W = {j: share.additive_public_share(j, self.parties) for j in self.parties}

    def ctx(self, prover: int) -> ProofContext:
        return ProofContext(self.session_id, prover, self.share.rid, b"presign")

    def _first_round(self) -> "PresignRound1":
        rng = self.rng
        k, gamma = random_scalar(rng), random_scalar(rng)
        rho, nu = self.pk.random_rho(rng), self.pk.random_rho(rng)
        y, a, b = random_scalar(rng), random_scalar(rng), random_scalar(rng)
        return PresignRound1(self, k, gamma, rho, nu, y, a, b)


@dataclass(eq=False)
class PresignRound1(Round):
    """K_i = enc(k_i), G_i = enc(γ_i) with El-Gamal commitments; Π^enc-elg to each j."""

    broadcast = R1Bcast
    direct = R1Direct
    echo = True
    party: PresignParty
    k: int
    gamma: int
    rho: int
    nu: int
    y: int
    a: int
    b: int
    sent: R1Bcast | None = None

    def __repr__(self) -> str:
        return "PresignRound1(<secret>)"

    def send(self):
        p, rng = self.party, self.party.rng
        K = p.sk.encrypt(self.k, self.rho)
        Gc = p.sk.encrypt(self.gamma, self.nu)
        Y = G * self.y
        bc = R1Bcast(p.setup, int(K), int(Gc), Y, G * self.a, Y * self.a + G * self.k,
                     G * self.b, Y * self.b + G * self.gamma)
        self.sent = bc
        pub_k = enc_elg.EncElgPublic(p.pk, bc.K, Y, bc.A1, bc.A2)
        pub_g = enc_elg.EncElgPublic(p.pk, bc.G, Y, bc.B1, bc.B2)
        wit_k = enc_elg.EncElgWitness(self.k, self.rho, self.a)
        wit_g = enc_elg.EncElgWitness(self.gamma, self.nu, self.b)
        ctx = p.ctx(p.me)
        directs = {
            j: R1Direct(enc_elg.prove(ctx, pub_k, wit_k, p.rps[j], p.params, rng, paillier_sk=p.sk),
                        enc_elg.prove(ctx, pub_g, wit_g, p.rps[j], p.params, rng, paillier_sk=p.sk))
            for j in p.others
        }
        return bc, directs

    def agree(self, broadcasts: dict[int, R1Bcast]) -> None:
        self.party.require_same_setup(self.party.setup, {j: bc.key_state for j, bc in broadcasts.items()})

    def check(self, j: int, bc: R1Bcast, direct: R1Direct) -> None:
        p = self.party
        pkj = p.pks[j]
        for name, C, B, X, proof in (("K", bc.K, bc.A1, bc.A2, direct.psi0),
                                     ("G", bc.G, bc.B1, bc.B2, direct.psi1)):
            try:
                pkj.check_ciphertext(C)
                enc_elg.verify(p.ctx(j), enc_elg.EncElgPublic(pkj, C, bc.Y, B, X), proof,
                               p.rps[p.me], p.params, setup_secret=p.rp_own)
            except (EncodingError, ProofError) as exc:
                raise Misbehaviour(f"Π^enc-elg for {name} failed: {exc}") from exc

    def finish(self, broadcasts: dict[int, R1Bcast], directs: dict) -> Round:
        assert self.sent is not None
        return self.next(k=self.k, gamma=self.gamma, a=self.a, b=self.b,
                         r1={self.party.me: self.sent, **broadcasts})


@dataclass(eq=False)
class PresignRound2(Round):
    """Γ_i with Π^elog; the affine ciphertexts D, F (for γ_i) and D̂, F̂ (for w_i) with
    Π^aff-g to each j."""

    broadcast = R2Bcast
    direct = R2Direct
    echo = True
    party: PresignParty
    k: int
    gamma: int
    a: int
    b: int
    r1: dict[int, R1Bcast]
    beta: dict[int, int] = field(default_factory=dict)
    beta_hat: dict[int, int] = field(default_factory=dict)
    witness: dict[tuple[bool, int], aff_g.AffGWitness] = field(default_factory=dict)
    sent: R2Bcast | None = None

    def __repr__(self) -> str:
        return "PresignRound2(<secret>)"

    def send(self):
        p, rng, params = self.party, self.party.rng, self.party.params
        me = self.r1[p.me]
        Gamma_i = G * self.gamma
        ctx = p.ctx(p.me)
        psi_elog = elog.prove(ctx, elog.ElogPublic(me.B1, me.B2, me.Y, Gamma_i, G),
                              elog.ElogWitness(self.gamma, self.b), rng)
        D, F, D_hat, F_hat, directs = {}, {}, {}, {}, {}
        for j in p.others:
            pkj: PaillierPublicKey = p.pks[j]
            Kj = self.r1[j].K
            proofs = {}
            for hat in (False, True):
                x = p.w if hat else self.gamma
                X = p.W[p.me] if hat else Gamma_i
                beta = sample_signed(rng, params.ell_prime)
                s = pkj.random_rho(rng)
                r = p.pk.random_rho(rng)
                d = pow_sec(Kj, x, pkj.N2) * pkj.encrypt(-beta, s) % pkj.N2  # 0 <= x < q
                f = p.sk.encrypt(beta, r)
                wit = aff_g.AffGWitness(x, beta, s, r)
                self.witness[(hat, j)] = wit
                proofs[hat] = aff_g.prove(ctx, aff_g.AffGPublic(pkj, p.pk, Kj, int(d), int(f), X), wit,
                                          p.rps[j], params, rng, paillier_sk=p.sk)
                if hat:
                    self.beta_hat[j], D_hat[j], F_hat[j] = beta, int(d), int(f)
                else:
                    self.beta[j], D[j], F[j] = beta, int(d), int(f)
            directs[j] = R2Direct(proofs[False], proofs[True])
        self.sent = R2Bcast(Gamma_i, psi_elog, D, F, D_hat, F_hat)
        return self.sent, directs

    def check(self, j: int, bc: R2Bcast, direct: R2Direct) -> None:
        p = self.party
        r1 = self.r1[j]
        targets = [k for k in p.parties if k != j]
        if any(sorted(m) != targets for m in (bc.D, bc.F, bc.D_hat, bc.F_hat)):
            raise Misbehaviour("round-2 ciphertext maps must name every other signer")
        try:
            elog.verify(p.ctx(j), elog.ElogPublic(r1.B1, r1.B2, r1.Y, bc.Gamma, G), bc.psi_elog)
        except ProofError as exc:
            raise Misbehaviour(f"Π^elog for Γ failed: {exc}") from exc
        try:
            for k in targets:
                p.pks[k].check_ciphertext(bc.D[k])
                p.pks[k].check_ciphertext(bc.D_hat[k])
                p.pks[j].check_ciphertext(bc.F[k])
                p.pks[j].check_ciphertext(bc.F_hat[k])
        except EncodingError as exc:
            raise Misbehaviour(f"round-2 ciphertext out of range: {exc}") from exc
        for hat, proof, X in ((False, direct.psi, bc.Gamma), (True, direct.psi_hat, p.W[j])):
            Dm, Fm = (bc.D_hat, bc.F_hat) if hat else (bc.D, bc.F)
            pub = aff_g.AffGPublic(p.pk, p.pks[j], self.r1[p.me].K, Dm[p.me], Fm[p.me], X)
            try:
                aff_g.verify(p.ctx(j), pub, proof, p.rps[p.me], p.params, setup_secret=p.rp_own)
            except ProofError as exc:
                raise Misbehaviour(f"Π^aff-g for {'D̂' if hat else 'D'} failed: {exc}") from exc

    def finish(self, broadcasts: dict[int, R2Bcast], directs: dict) -> Round:
        p = self.party
        assert self.sent is not None
        r2 = {p.me: self.sent, **broadcasts}
        Gamma = point_sum(r2[j].Gamma for j in p.parties)
        alpha = sum(p.sk.decrypt_signed(r2[j].D[p.me]) for j in p.others)
        alpha_hat = sum(p.sk.decrypt_signed(r2[j].D_hat[p.me]) for j in p.others)
        delta_i = int((self.gamma * self.k + alpha + sum(self.beta.values())) % Q)
        chi_i = int((p.w * self.k + alpha_hat + sum(self.beta_hat.values())) % Q)
        return self.next(k=self.k, gamma=self.gamma, a=self.a, r1=self.r1, r2=r2, witness=self.witness,
                         Gamma=Gamma, delta_i=delta_i, chi_i=chi_i)


@dataclass(eq=False)
class PresignRound3(Round):
    """δ_i, Δ_i = Γ^k_i, S_i = Γ^χ_i with Π^elog for Δ_i."""

    broadcast = R3Bcast
    echo = True
    party: PresignParty
    k: int
    gamma: int
    a: int
    r1: dict[int, R1Bcast]
    r2: dict[int, R2Bcast]
    witness: dict[tuple[bool, int], aff_g.AffGWitness]
    Gamma: Point
    delta_i: int
    chi_i: int
    sent: R3Bcast | None = None

    def __repr__(self) -> str:
        return "PresignRound3(<secret>)"

    def send(self):
        p = self.party
        Delta = self.Gamma * self.k
        S = self.Gamma * self.chi_i
        me = self.r1[p.me]
        psi = elog.prove(p.ctx(p.me), elog.ElogPublic(me.A1, me.A2, me.Y, Delta, self.Gamma),
                         elog.ElogWitness(self.k, self.a), p.rng)
        self.sent = R3Bcast(self.delta_i, Delta, S, psi)
        return self.sent, {}

    def check(self, j: int, bc: R3Bcast, direct: None) -> None:
        r1 = self.r1[j]
        if not 0 <= bc.delta < Q:
            raise Misbehaviour("δ is not a scalar")
        try:
            elog.verify(self.party.ctx(j), elog.ElogPublic(r1.A1, r1.A2, r1.Y, bc.Delta, self.Gamma), bc.psi_elog)
        except ProofError as exc:
            raise Misbehaviour(f"Π^elog for Δ failed: {exc}") from exc

    def finish(self, broadcasts: dict[int, R3Bcast], directs: dict) -> Round:
        p = self.party
        assert self.sent is not None
        r3 = {p.me: self.sent, **broadcasts}
        delta = sum(r3[j].delta for j in p.parties) % Q
        if delta == 0 or G * delta != point_sum(r3[j].Delta for j in p.parties):
            outcome = "delta"
        elif point_sum(r3[j].S for j in p.parties) != p.share.public_key_point * delta:
            outcome = "chi"
        else:
            outcome = ""
        return self.next(k=self.k, gamma=self.gamma, r1=self.r1, r2=self.r2, r3=r3, witness=self.witness,
                         Gamma=self.Gamma, chi_i=self.chi_i, delta=delta, outcome=outcome)


@dataclass(eq=False)
class PresignRound4(Round):
    """The outcome; on failure the identification proofs (Fig. 9) of every party."""

    broadcast = R4Bcast
    party: PresignParty
    k: int
    gamma: int
    r1: dict[int, R1Bcast]
    r2: dict[int, R2Bcast]
    r3: dict[int, R3Bcast]
    witness: dict[tuple[bool, int], aff_g.AffGWitness]
    Gamma: Point
    chi_i: int
    delta: int
    outcome: str

    def __repr__(self) -> str:
        return "PresignRound4(<secret>)"

    def send(self):
        if not self.outcome:
            return R4Bcast("", None, {}), {}
        p = self.party
        hat = self.outcome == "chi"
        x = p.w if hat else self.gamma
        ctx = p.ctx(p.me)
        psi_aff = {j: aff_g_star.prove(ctx, self._aff_public(p.me, j, hat), self.witness[(hat, j)],
                                       p.params, p.rng, paillier_sk=p.sk)
                   for j in p.others}
        pub = self._dec_public(p.me, hat)
        combined = p.sk.pow_n2(pub.K, x) * pub.D % p.pk.N2
        y = p.sk.decrypt_signed(combined)
        rho = p.sk.recover_rho(combined, y)
        psi_dec = dec.prove(ctx, pub, dec.DecWitness(x, int(y), int(rho)), p.params, p.rng,
                            paillier_sk=p.sk)
        return R4Bcast(self.outcome, psi_dec, psi_aff), {}

    def _aff_public(self, i: int, j: int, hat: bool) -> aff_g.AffGPublic:
        """The statement of D_{j,i} (or D̂_{j,i}), which party i made for party j."""
        p = self.party
        r2 = self.r2[i]
        D, F = (r2.D_hat, r2.F_hat) if hat else (r2.D, r2.F)
        X = p.W[i] if hat else r2.Gamma
        return aff_g.AffGPublic(p.pks[j], p.pks[i], self.r1[j].K, D[j], F[j], X)

    def _dec_public(self, i: int, hat: bool) -> dec.DecPublic:
        """δ_i (χ_i) is the decryption of K_i^{γ_i} · Π_j D_{i,j} F_{j,i} (hatted for χ_i)."""
        p = self.party
        pk = p.pks[i]
        acc = 1
        for j in p.parties:
            if j == i:
                continue
            D = (self.r2[j].D_hat if hat else self.r2[j].D)[i]
            F = (self.r2[i].F_hat if hat else self.r2[i].F)[j]
            acc = acc * D * F % pk.N2
        r3 = self.r3[i]
        if hat:
            return dec.DecPublic(pk, self.r1[i].K, p.W[i], int(acc), r3.S, self.Gamma, len(p.parties))
        return dec.DecPublic(pk, self.r1[i].K, self.r2[i].Gamma, int(acc), G * r3.delta, G,
                             len(p.parties))

    def check(self, j: int, bc: R4Bcast, direct: None) -> None:
        if bc.outcome != self.outcome:
            # the outcome follows from echoed values, so a different one is a lie
            raise Misbehaviour("reported a different presignature outcome")

    def finish(self, broadcasts: dict[int, R4Bcast], directs: dict) -> Done:
        p = self.party
        if self.outcome:
            raise self._identify(broadcasts)
        d_inv = inverse(self.delta)
        return Done(Presignature(
            presig_id=p.session_id, index=p.me, signers=list(p.parties),
            key_fingerprint=p.fingerprint, epoch=p.share.epoch, R=self.Gamma,
            k_tilde=self.k * d_inv % Q, chi_tilde=self.chi_i * d_inv % Q,
            Delta_tilde={j: self.r3[j].Delta * d_inv for j in p.parties},
            S_tilde={j: self.r3[j].S * d_inv for j in p.parties},
        ))

    def _identify(self, bcast: dict[int, R4Bcast]) -> ProtocolAbort:
        """Fig. 9: check every other party's Π^dec and Π^aff-g* proofs; name who fails."""
        p = self.party
        hat = self.outcome == "chi"
        culprits = []
        for i in p.others:
            msg = bcast[i]
            if msg.psi_dec is None or sorted(msg.psi_aff) != [j for j in p.parties if j != i]:
                culprits.append(i)  # identification proofs missing
                continue
            ctx = p.ctx(i)
            try:
                dec.verify(ctx, self._dec_public(i, hat), msg.psi_dec, p.params)
                for j, proof in msg.psi_aff.items():
                    aff_g_star.verify(ctx, self._aff_public(i, j, hat), proof, p.params)
            except ProofError:
                culprits.append(i)
        return ProtocolAbort(f"presignature check failed ({self.outcome})"
                             + ("" if culprits else "; no party could be identified"),
                             culprits, protocol=p.PROTOCOL, round=4)


PresignParty.ROUNDS = {1: PresignRound1, 2: PresignRound2, 3: PresignRound3, 4: PresignRound4}
