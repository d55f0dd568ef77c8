"""No secret goes through variable-time gmpy2 arithmetic (issue 12, items 10 and 11).

A recording shim replaces ``gmpy2.powmod``, ``gmpy2.invert`` and ``gmpy2.powmod_sec`` (every
module of appliance/tss calls them through the ``gmpy2`` module: the last test checks that)
while real secret-key operations run: Paillier decryption and the rest of a fresh
``PaillierSecretKey`` (so its CRT constants are built under the shim), ``recover_rho``, the
Π^mod, Π^fac and Π^prm provers, a whole presign from freshly decoded key shares and the
presign identification step. Afterwards every recorded call is checked against the family of
values derived from the secrets of that run: p, q, P, Q and the shapes this code derives from
them (p - 1, p - 2, (p + 1)/4, p², p(p - 1), φ, λ, N^-1 mod φ and its reductions, ...), λ of
ring-Pedersen, key shares and the presign's ephemeral secrets.

A call is a violation when ``powmod``'s exponent is secret-derived (or its exponent is
negative and its base secret-derived: an inversion), or when ``invert``'s operand or modulus
is. ``powmod_sec`` is the right place for them; its calls are only counted, to show that the
secret operations were reached.
"""

from __future__ import annotations

import ast
import dataclasses
import sys
from contextlib import contextmanager
from math import lcm
from pathlib import Path
from typing import Iterator

import gmpy2
import pytest
from gmpy2 import mpz

from appliance.tss.group import Q, SeededRNG
from appliance.tss.keyshare import KeyShare
from appliance.tss.paillier import PaillierSecretKey, RingPedersenSecret
from appliance.tss.params import security_params
from appliance.tss.presign import PresignParty, PresignRound3
from appliance.tss.protocol import ProtocolAbort, Round
from appliance.tss.runner import Identities, run
from appliance.tss.transcript import ProofContext
from appliance.tss.zk import fac, mod, prm

_INVERT = gmpy2.invert  # the test's own reference computations run outside the shim
CTX = ProofContext(b"ct-session", prover=1, rid=b"ct-rid")


class SecretFamily:
    """Values derived from the secrets of one run, and a test for 'derived from them'."""

    def __init__(self) -> None:
        self.values: set[mpz] = set()
        self.primes: list[tuple[mpz, mpz]] = []  # (secret prime, the public modulus it divides)

    def add(self, *values: int) -> "SecretFamily":
        self.values.update(abs(mpz(v)) for v in values)
        return self

    def add_factors(self, p: int, q: int) -> "SecretFamily":
        p, q = mpz(p), mpz(q)
        N, phi = p * q, (p - 1) * (q - 1)
        lam = mpz(lcm(int(p - 1), int(q - 1)))
        for s in (p, q):
            k = (s + 1) // 4
            self.add(s, s - 1, s - 2, s + 1, k, k * k % (s - 1), (s - 1) // 2, s * s, s * (s - 1))
            self.primes.append((s, N))
        self.add(phi, phi - 1, lam)
        for m in (phi, lam):
            if gmpy2.gcd(N, m) == 1:
                n_inv = _INVERT(N, m)
                self.add(n_inv, n_inv % (p - 1), n_inv % (q - 1))
        return self

    def derived(self, v: int) -> bool:
        v = abs(mpz(v))
        if v <= 4:
            return False
        if v in self.values:
            return True
        # p - 1, p - 2, multiples of p that are not multiples of the public N, ...
        return any(v % s in (0, 1, s - 1, s - 2) and v % n != 0 for s, n in self.primes)


@dataclasses.dataclass
class Call:
    fn: str
    args: tuple
    where: str


class GmpyRecorder:
    def __init__(self) -> None:
        self.calls: list[Call] = []

    def count(self, fn: str) -> int:
        return sum(1 for c in self.calls if c.fn == fn)

    def violations(self, family: SecretFamily) -> list[str]:
        bad = []
        for c in self.calls:
            if c.fn == "powmod":
                base, exp, _mod = c.args
                if family.derived(exp) or (exp < 0 and family.derived(base)):
                    bad.append(f"powmod with a secret-derived exponent (or inverted base) in {c.where}")
            elif c.fn == "invert":
                x, m = c.args
                if family.derived(x) or family.derived(m):
                    bad.append(f"invert of / modulo a secret-derived value in {c.where}")
        return bad


def _callers(frame, depth: int = 4) -> str:
    """'file:function:line < its caller < ...' for the innermost ``depth`` frames."""
    out = []
    while frame is not None and len(out) < depth:
        out.append(f"{Path(frame.f_code.co_filename).name}:{frame.f_code.co_name}:{frame.f_lineno}")
        frame = frame.f_back
    return " < ".join(out)


@contextmanager
def recording() -> Iterator[GmpyRecorder]:
    rec = GmpyRecorder()
    originals = {name: getattr(gmpy2, name) for name in ("powmod", "invert", "powmod_sec")}

    def shim(name, fn):
        def wrapper(*args):
            rec.calls.append(Call(name, tuple(mpz(a) for a in args), _callers(sys._getframe(1))))
            return fn(*args)
        return wrapper

    for name, fn in originals.items():
        setattr(gmpy2, name, shim(name, fn))
    try:
        yield rec
    finally:
        for name, fn in originals.items():
            setattr(gmpy2, name, fn)


def fresh_paillier(sk: PaillierSecretKey) -> PaillierSecretKey:
    """A new key object over the same primes: its cached constants are not built yet."""
    return PaillierSecretKey(mpz(sk.p), mpz(sk.q))


def fresh_rp(rp: RingPedersenSecret) -> RingPedersenSecret:
    return RingPedersenSecret(mpz(rp.p), mpz(rp.q), mpz(rp.lam), rp.params)


def test_paillier_secret_key_operations(paillier_keys):
    sk = fresh_paillier(paillier_keys[2048][0])
    rng = SeededRNG("ct-paillier")
    m, x = -(1 << 200) - 12345, (1 << 250) + 99
    rho = sk.public.random_rho(rng)
    c = sk.public.encrypt(m, rho)
    family = SecretFamily().add_factors(sk.p, sk.q).add(m, x, (1 + m * sk.N) % sk.public.N2)
    with recording() as rec:
        assert sk.decrypt_signed(c) == m
        assert sk.recover_rho(c, m) == rho
        sk.pow_n2(c, x)
        sk.pow_n(rho, x)
        sk.encrypt(m, rho)
    assert rec.violations(family) == []
    assert rec.count("powmod_sec") >= 4


def test_recover_rho_on_a_key_whose_constants_exist(paillier_keys):
    """recover_rho's own step (the inverse of 1 + mN, m the secret plaintext), alone."""
    sk = fresh_paillier(paillier_keys[2048][1])
    rng = SeededRNG("ct-rho")
    m = (1 << 255) + 7
    rho = sk.public.random_rho(rng)
    c = sk.encrypt(m, rho)
    sk.decrypt(c)
    family = SecretFamily().add_factors(sk.p, sk.q).add(m, (1 + m * sk.N) % sk.public.N2)
    with recording() as rec:
        assert sk.recover_rho(c, m) == rho
    assert rec.violations(family) == []


def test_pi_mod_prover(paillier_keys):
    sk = fresh_paillier(paillier_keys[2048][1])
    params = dataclasses.replace(security_params(2048), m=8)
    with recording() as rec:
        proof = mod.prove(CTX, sk.public, sk, params, SeededRNG("ct-mod"))
    mod.verify(CTX, sk.public, proof, params)
    assert rec.violations(SecretFamily().add_factors(sk.p, sk.q)) == []
    assert rec.count("powmod_sec") >= 8


def test_pi_fac_prover_and_own_setup_verifier(paillier_keys, ring_pedersen):
    sk = fresh_paillier(paillier_keys[2048][0])
    rp = fresh_rp(ring_pedersen[2048][1])
    params = security_params(2048)
    family = SecretFamily().add_factors(sk.p, sk.q).add_factors(rp.p, rp.q).add(rp.lam)
    with recording() as rec:
        proof = fac.prove(CTX, sk.public, sk, rp.params, params, SeededRNG("ct-fac"))
        fac.verify(CTX, sk.public, proof, rp.params, params, setup_secret=rp)
    assert rec.violations(family) == []
    assert rec.count("powmod_sec") >= 5


def test_pi_prm_prover(ring_pedersen):
    rp = fresh_rp(ring_pedersen[2048][0])
    params = dataclasses.replace(security_params(2048), m=8)
    family = SecretFamily().add_factors(rp.p, rp.q).add(rp.lam)
    with recording() as rec:
        proof = prm.prove(CTX, rp.params, rp, params, SeededRNG("ct-prm"))
    prm.verify(CTX, rp.params, proof, params)
    assert rec.violations(family) == []
    assert rec.count("powmod_sec") >= 8


def _presign_family(shares: list[KeyShare], parties: dict[int, PresignParty],
                    rounds: list[Round]) -> SecretFamily:
    family = SecretFamily()
    for s in shares:
        a = s.aux_secret
        family.add_factors(a.p, a.q).add_factors(a.P, a.Q).add(a.lam, s.secret_share)
    for party in parties.values():
        family.add(party.w)
    for rnd in rounds:  # the round objects hold k_i, γ_i, β_{i,j}, β̂_{i,j}, χ_i
        family.add(*(getattr(rnd, name) for name in ("k", "gamma", "chi_i") if hasattr(rnd, name)))
        family.add(*getattr(rnd, "beta", {}).values(), *getattr(rnd, "beta_hat", {}).values())
    return family


def _recording_rounds(parties: dict[int, PresignParty], rounds: list[Round], corrupted=()):
    """A pass-through tamper that keeps every round object a message was sent from."""

    def tamper(msg, recipient):
        current = parties[msg.sender]._current
        if current is not None and all(current is not r for r in rounds):
            rounds.append(current)
        return msg

    tamper.corrupted = set(corrupted)
    return tamper


IDS = Identities(range(3), SeededRNG("ct-presign-ids"))


def _parties(shares, cls_for=None, seed="ct"):
    signers = sorted(s.index for s in shares)
    cls_for = cls_for or {}
    return {s.index: cls_for.get(s.index, PresignParty)(b"ct-presign-" + seed.encode(), s, signers,
                                                        IDS.signers[s.index], IDS.directory,
                                                        SeededRNG(f"{seed}{s.index}"))
            for s in shares}


def test_presign_from_freshly_decoded_shares(key_2of3):
    """As a node runs it: the share comes out of its seal, so every key object is new."""
    shares = [KeyShare.from_bytes(s.to_bytes()) for s in key_2of3[:2]]
    rounds: list[Round] = []
    with recording() as rec:
        parties = _parties(shares)
        run(parties, _recording_rounds(parties, rounds))
    assert len(rounds) == 2 * 4
    assert rec.violations(_presign_family(shares, parties, rounds)) == []
    assert rec.count("powmod_sec") > 0


class LyingDeltaRound3(PresignRound3):
    """Announces a wrong δ_i, so that every party goes through the identification step
    (Π^dec with recover_rho, Π^aff-g*)."""

    def send(self):
        self.delta_i = (self.delta_i + 1) % Q
        return super().send()


class LyingDelta(PresignParty):
    ROUNDS = {**PresignParty.ROUNDS, 3: LyingDeltaRound3}


def test_presign_identification_step(key_2of3, monkeypatch):
    import appliance.tss.presign as presign_module

    monkeypatch.setattr(presign_module, "security_params",
                        lambda bits: dataclasses.replace(security_params(bits), m=8))
    shares = [KeyShare.from_bytes(s.to_bytes()) for s in key_2of3[1:]]

    rounds: list[Round] = []
    with recording() as rec:
        parties = _parties(shares, {2: LyingDelta}, seed="ct-ident")
        with pytest.raises(ProtocolAbort) as err:
            run(parties, _recording_rounds(parties, rounds, corrupted={2}))
    assert err.value.culprits == [2] and err.value.round == 4
    assert any(":recover_rho:" in c.where for c in rec.calls if c.fn == "powmod_sec")
    assert rec.violations(_presign_family(shares, parties, rounds)) == []


def test_tss_calls_gmpy2_arithmetic_only_through_the_module():
    """``from gmpy2 import powmod`` would bypass the shim above (and any future one)."""
    root = Path(__file__).resolve().parents[2] / "appliance" / "tss"
    offenders = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module == "gmpy2":
                names = {a.name for a in node.names} - {"mpz"}
                if names:
                    offenders.append(f"{path.relative_to(root)}: {sorted(names)}")
    assert offenders == []


def test_key_objects_and_their_constants_are_built_once_per_key(key_2of3):
    """A presign asks its AuxSecret for the keys: the same objects (and CRT constants) each time."""
    share = KeyShare.from_bytes(key_2of3[0].to_bytes())
    a = share.aux_secret
    assert a.paillier() is a.paillier()
    assert a.ring_pedersen(share.aux[share.index]) is a.ring_pedersen(share.aux[share.index])
    a.paillier().decrypt(a.paillier().public.encrypt(1, 2))
    with recording() as rec:
        a.paillier().decrypt(a.paillier().public.encrypt(3, 5))
    assert not any("ctinv.py" in c.where for c in rec.calls)
