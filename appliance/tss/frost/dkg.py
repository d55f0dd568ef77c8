"""t-of-n distributed key generation for FROST (the FROST paper, Komlo-Goldberg 2020, Fig. 1:
Pedersen's DKG with Feldman commitments and a Schnorr proof of knowledge of each constant
term), in this package's sans-I/O ``Party`` form (signed messages, echo broadcast,
identifiable abort), for any ciphersuite of ``suites.py``.

Identifiers x_j = HX("id", sid || j) (a nonzero scalar per party, distinct, apart from j).

Round 1 (broadcast, echoed): the session-parameter hash (scheme, parties, t); the Feldman
  vector C_i = (φ_i0, ..., φ_i,t-1), φ_ik = a_ik·G, exactly t entries; the proof σ_i = (R_i, μ_i)
  with k ← F, R_i = k·G, c_i = HX("dkg-pok", sid || i || φ_i0 || R_i), μ_i = k + a_i0·c_i.
Round 2 (broadcast: empty, it carries the echo of round 1; direct: f_i(x_j) to each j — the
  node encrypts direct payloads to the recipient's transport key).
Output: sk_i = Σ_j f_j(x_i); PK_k = Σ_j Σ_m x_k^m·φ_jm; PK = Σ_j φ_j0.

Checks on party j's messages (a failure names j; its signature on the message proves it):
1. round 1 carries exactly t commitments, each a valid element other than the identity,
   and R_j, μ_j decode;
2. μ_j·G == R_j + c_j·φ_j0 (the proof of knowledge, bound to the session and to j: a
   commitment copied from another party or session fails here — rogue-key attacks);
3. the share f_j(x_i) decodes as a scalar;
4. f_j(x_i)·G == Σ_m x_i^m·φ_jm (the complaint of the FROST paper: the share's sender is named);
plus the framework's checks: another party given other parameters stops the session
without blame; a party that sent different round-1 broadcasts to different parties is named
by the echo.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from appliance.errors import EncodingError, ParameterError
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


def identifiers(S: Ciphersuite, session_id: bytes, parties: list[int]) -> dict[int, Any]:
    ids = {j: S.HX(b"id", session_id + j.to_bytes(4, "big")) for j in parties}
    ints = [int.from_bytes(S.G.serialize_scalar(x), "big") for x in ids.values()]
    if len(set(ints)) != len(ints) or any(v == 0 for v in ints):
        raise ParameterError("identifiers collide; choose another session id")
    return ids


def pok_challenge(S: Ciphersuite, session_id: bytes, i: int, phi0: Any, R: Any) -> Any:
    G = S.G
    return S.HX(b"dkg-pok", len(session_id).to_bytes(2, "big") + session_id + i.to_bytes(4, "big")
                + G.serialize_element(phi0) + G.serialize_element(R))


def commitment_eval(S: Ciphersuite, C: list[Any], x: Any) -> Any:
    """Σ_m x^m·C_m."""
    G = S.G
    acc, power = G.IDENTITY, G.ONE
    for c in C:
        acc = G.padd(acc, G.mul_point(c, power))
        power = G.mul(power, x)
    return acc


def poly_eval(S: Ciphersuite, coeffs: list[Any], x: Any) -> Any:
    G = S.G
    acc = G.ZERO
    for a in reversed(coeffs):
        acc = G.add(G.mul(acc, x), a)
    return acc


@dataclass(frozen=True)
class DkgRound1:
    setup: bytes
    commitments: list[bytes]
    R: bytes
    mu: bytes


@dataclass(frozen=True)
class DkgEcho:
    """Round 2's broadcast: nothing of its own, it carries the echo of round 1."""


@dataclass(frozen=True)
class DkgShare:
    share: bytes


class FrostDkgParty(Party):
    PROTOCOL = "frost-keygen"

    def __init__(self, session_id: bytes, me: int, parties: list[int], threshold: int, scheme: str,
                 signer: MessageSigner, verifier: MessageVerifier, rng: RNG) -> None:
        super().__init__(session_id, me, parties, signer, verifier, rng)
        if not 1 <= threshold <= len(self.parties):
            raise ParameterError("threshold must be between 1 and the number of parties")
        self.S = suite_for(scheme)
        self.t = threshold
        self.setup = setup_hash(self.PROTOCOL, scheme=scheme, parties=self.parties, threshold=threshold)
        self.ids = identifiers(self.S, self.session_id, self.parties)

    def _first_round(self) -> "DkgRound1Step":
        G = self.S.G
        coeffs = [G.random_scalar(self.rng) for _ in range(self.t)]
        C = [G.base_mul(a) for a in coeffs]
        k = G.random_scalar(self.rng)
        R = G.base_mul(k)
        c = pok_challenge(self.S, self.session_id, self.me, C[0], R)
        mu = G.add(k, G.mul(coeffs[0], c))
        return DkgRound1Step(self, coeffs, C, R, mu)


@dataclass(eq=False)
class DkgRound1Step(Round):
    """Send the Feldman vector and the proof of knowledge of a_i0; check everyone's."""

    broadcast = DkgRound1
    echo = True
    party: FrostDkgParty
    coeffs: list[Any]
    C: list[Any]
    R: Any
    mu: Any

    def __repr__(self) -> str:
        return "DkgRound1Step(<secret>)"

    def send(self):
        p = self.party
        G = p.S.G
        return DkgRound1(p.setup, [G.serialize_element(c) for c in self.C], G.serialize_element(self.R),
                         G.serialize_scalar(self.mu)), {}

    def agree(self, broadcasts: dict[int, DkgRound1]) -> None:
        self.party.require_same_setup(self.party.setup, {j: m.setup for j, m in broadcasts.items()})

    def check(self, j: int, msg: DkgRound1, direct: None) -> None:
        p = self.party
        G = p.S.G
        try:
            if len(msg.commitments) != p.t:
                raise EncodingError(f"expected exactly {p.t} commitments")
            C = [G.deserialize_element(c) for c in msg.commitments]
            R, mu = G.deserialize_element(msg.R), G.deserialize_scalar(msg.mu)
        except EncodingError as exc:
            raise Misbehaviour(f"check 1: {exc}") from exc
        c = pok_challenge(p.S, p.session_id, j, C[0], R)
        if G.base_mul(mu) != G.padd(R, G.mul_point(C[0], c)):
            raise Misbehaviour("check 2: proof of knowledge of the constant term fails")

    def finish(self, broadcasts: dict[int, DkgRound1], directs: dict) -> Round:
        G = self.party.S.G
        C = {j: [G.deserialize_element(c) for c in m.commitments] for j, m in broadcasts.items()}
        C[self.party.me] = self.C
        return self.next(coeffs=self.coeffs, C=C)


@dataclass(eq=False)
class DkgRound2Step(Round):
    """Send f_i(x_j) to each j; check each received share against its sender's vector."""

    broadcast = DkgEcho
    direct = DkgShare
    party: FrostDkgParty
    coeffs: list[Any]
    C: dict[int, list[Any]]

    def __repr__(self) -> str:
        return "DkgRound2Step(<secret>)"

    def send(self):
        p = self.party
        G = p.S.G
        return DkgEcho(), {j: DkgShare(G.serialize_scalar(poly_eval(p.S, self.coeffs, p.ids[j])))
                           for j in p.others}

    def check(self, j: int, msg: DkgEcho, direct: DkgShare) -> None:
        p = self.party
        G = p.S.G
        try:
            s = G.deserialize_scalar(direct.share)
        except EncodingError as exc:
            raise Misbehaviour(f"check 3: {exc}") from exc
        if G.base_mul(s) != commitment_eval(p.S, self.C[j], p.ids[p.me]):
            raise Misbehaviour("check 4: share does not match the sender's Feldman commitments")

    def finish(self, broadcasts: dict, directs: dict[int, DkgShare]) -> Done:
        p = self.party
        S, G = p.S, p.S.G
        sk = poly_eval(S, self.coeffs, p.ids[p.me])
        for d in directs.values():
            sk = G.add(sk, G.deserialize_scalar(d.share))
        PK_shares = {k: G.psum(commitment_eval(S, self.C[j], p.ids[k]) for j in p.parties)
                     for k in p.parties}
        if G.base_mul(sk) != PK_shares[p.me]:
            raise ProtocolAbort("internal: own share does not match its verification share")
        PK = G.psum(self.C[j][0] for j in p.parties)
        return Done(FrostKeyShare(
            scheme=S.scheme, index=p.me, threshold=p.t,
            identifiers={j: G.serialize_scalar(x) for j, x in p.ids.items()},
            secret_share=G.serialize_scalar(sk),
            verification_shares={j: G.serialize_element(X) for j, X in PK_shares.items()},
            group_public_key=G.serialize_element(PK),
        ))


FrostDkgParty.ROUNDS = {1: DkgRound1Step, 2: DkgRound2Step}
