"""Benchmarks of the cryptographic core, in memory: modexp unit costs, safe primes, every
proof, keygen/aux, presign and sign, and the modexp floor ratio.

Every figure is {"name", "value", "unit"} (plus optional "spread" or "detail").

Modular exponentiations are counted by wrapping ``gmpy2.powmod`` and ``gmpy2.powmod_sec``
(every module calls them through the ``gmpy2`` module). ``modexp_floor_ratio`` is a presign's
CPU time divided by the price of the exponentiations it performs, each priced by the measured
unit cost of the method it must use: ``powmod_sec`` for a secret exponent, ``powmod`` for a
public one, and CRT halves (p², q², p, q) where the party knows the factors — so the ratio is
what Python glue, hashing, encoding and curve arithmetic add on top of the unavoidable modexps.
The offset powers s^(-2^b) of the signed-exponent trick are cached per parameter set and so
belong to set-up, not to a presign.
"""

from __future__ import annotations

import hashlib
import statistics
import time
from collections import Counter
from contextlib import contextmanager
from typing import Callable, Iterator

import gmpy2
from gmpy2 import mpz

from appliance.tss import simulate
from appliance.tss.group import G, Q, SeededRNG, random_scalar
from appliance.tss.paillier import generate_paillier, generate_ring_pedersen
from appliance.tss.params import security_params
from appliance.tss.presign import Presignature
from appliance.tss.primes import PrimePool, random_safe_prime
from appliance.tss.runner import Identities
from appliance.tss.transcript import ProofContext

Figure = dict


def fig(name: str, value: float, unit: str, **extra) -> Figure:
    return {"name": name, "value": round(value, 4) if isinstance(value, float) else value, "unit": unit, **extra}


# ----------------------------------------------------------------------------------------
# modexp counting


class ModexpLog:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int]] = []  # (kind, modulus bits, exponent bits)

    def counts(self) -> dict[str, int]:
        c = Counter(f"{kind}:{m}x{e}" for kind, m, e in self.calls)
        return dict(sorted(c.items()))


def _bucket(bits: int) -> int:
    """Round a size to a multiple of 64 bits, for readable counts."""
    return (bits + 63) // 64 * 64


@contextmanager
def counting_modexps() -> Iterator[ModexpLog]:
    log = ModexpLog()
    plain, sec = gmpy2.powmod, gmpy2.powmod_sec

    def powmod(b, e, m):
        log.calls.append(("pub", _bucket(int(m).bit_length()), _bucket(abs(int(e)).bit_length())))
        return plain(b, e, m)

    def powmod_sec(b, e, m):
        log.calls.append(("sec", _bucket(int(m).bit_length()), _bucket(int(e).bit_length())))
        return sec(b, e, m)

    gmpy2.powmod, gmpy2.powmod_sec = powmod, powmod_sec
    try:
        yield log
    finally:
        gmpy2.powmod, gmpy2.powmod_sec = plain, sec


# ----------------------------------------------------------------------------------------
# unit costs


def _time_per_call(fn: Callable[[], object], min_time: float = 0.15) -> float:
    """Seconds per call (CPU time), repeated until ``min_time`` has passed; best of 3."""
    best = float("inf")
    for _ in range(3):
        n, start = 0, time.process_time()
        while True:
            fn()
            n += 1
            elapsed = time.process_time() - start
            if elapsed >= min_time:
                break
        best = min(best, elapsed / n)
    return best


class CostModel:
    """Measured seconds per modexp as a function of (kind, modulus bits, exponent bits):
    cost grows linearly with the exponent size, so one measurement per modulus size and
    kind with a full-size exponent gives the per-bit price."""

    def __init__(self, rng: SeededRNG) -> None:
        self._per_bit: dict[tuple[str, int], float] = {}
        self._rng = rng

    def per_bit(self, kind: str, mod_bits: int) -> float:
        key = (kind, mod_bits)
        if key not in self._per_bit:
            m = mpz(int.from_bytes(self._rng.token_bytes(mod_bits // 8), "big")) | (1 << (mod_bits - 1)) | 1
            b = mpz(int.from_bytes(self._rng.token_bytes(mod_bits // 8), "big")) % m
            e = mpz(int.from_bytes(self._rng.token_bytes(mod_bits // 8), "big")) | (1 << (mod_bits - 1))
            fn = gmpy2.powmod_sec if kind == "sec" else gmpy2.powmod
            self._per_bit[key] = _time_per_call(lambda: fn(b, e, m), 0.05) / mod_bits
        return self._per_bit[key]

    def price(self, kind: str, mod_bits: int, exp_bits: int) -> float:
        return self.per_bit(kind, mod_bits) * max(exp_bits, 1)


def modexp_unit_costs(bits: int, rng: SeededRNG) -> list[Figure]:
    half = bits // 2
    p, q = mpz(random_safe_prime(half, rng)), mpz(random_safe_prime(half, rng))
    N = p * q
    N2 = N * N
    x = mpz(int.from_bytes(rng.token_bytes(bits // 8), "big")) % N
    e = mpz(int.from_bytes(rng.token_bytes(bits // 8), "big")) | 1
    out = []
    for label, mod in (("N", N), ("N2", N2), ("p", p), ("p2", p * p)):
        for kind, fn in (("plain", gmpy2.powmod), ("sec", gmpy2.powmod_sec)):
            t = _time_per_call(lambda fn=fn, mod=mod: fn(x % mod, e, mod))
            out.append(fig(f"modexp_{label}_{kind}_{bits}_ms", t * 1e3, "ms",
                           detail=f"modulus {int(mod).bit_length()} bits, exponent {bits} bits"))
    # CRT for N² with known factors, public exponent N (as in our own encryptions)
    from appliance.tss.paillier import PaillierSecretKey

    sk = PaillierSecretKey(p, q)
    t = _time_per_call(lambda: sk.encrypt(5, x))
    out.append(fig(f"paillier_encrypt_crt_{bits}_ms", t * 1e3, "ms"))
    t = _time_per_call(lambda: sk.public.encrypt(5, x))
    out.append(fig(f"paillier_encrypt_public_{bits}_ms", t * 1e3, "ms"))
    return out


def safe_prime_generation(bits: int, runs: int, rng: SeededRNG) -> Figure:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        random_safe_prime(bits, rng)
        times.append(time.perf_counter() - t)
    return fig(f"safe_prime_{bits}_s_median", statistics.median(times), "s",
               spread=[round(min(times), 3), round(max(times), 3)], runs=runs)


# ----------------------------------------------------------------------------------------
# proofs


def proof_figures(bits: int, pool: PrimePool, rng: SeededRNG, reps: int = 3) -> list[Figure]:
    from appliance.tss.zk import aff_g, aff_g_star, dec, elog, enc_elg, fac, mod, prm, sch

    params = security_params(bits)
    sk0, sk1 = generate_paillier(bits, pool), generate_paillier(bits, pool)
    rp = generate_ring_pedersen(bits, pool, rng)
    ctx = ProofContext(b"bench", 1, b"rid")
    out: list[Figure] = []

    def measure(name: str, prove: Callable[[], object], verify: Callable[[object], None]) -> None:
        proof = prove()
        with counting_modexps() as lp:
            prove()
        with counting_modexps() as lv:
            verify(proof)
        tp = min(_timed(prove) for _ in range(reps))
        tv = min(_timed(lambda: verify(proof)) for _ in range(reps))
        out.append(fig(f"zk_{name}_prove_{bits}_ms", tp * 1e3, "ms", modexps=lp.counts()))
        out.append(fig(f"zk_{name}_verify_{bits}_ms", tv * 1e3, "ms", modexps=lv.counts()))

    x = random_scalar(rng)
    measure("sch", lambda: sch.prove(ctx, G * x, x, rng), lambda p: sch.verify(ctx, G * x, p))
    measure("mod", lambda: mod.prove(ctx, sk0.public, sk0, params, rng),
            lambda p: mod.verify(ctx, sk0.public, p, params))
    measure("prm", lambda: prm.prove(ctx, rp.params, rp, params, rng),
            lambda p: prm.verify(ctx, rp.params, p, params))
    measure("fac", lambda: fac.prove(ctx, sk0.public, sk0, rp.params, params, rng),
            lambda p: fac.verify(ctx, sk0.public, p, rp.params, params, setup_secret=rp))

    a, b = random_scalar(rng), random_scalar(rng)
    rho = sk0.public.random_rho(rng)
    C = sk0.encrypt(x, rho)
    pub = enc_elg.EncElgPublic(sk0.public, int(C), G * a, G * b, G * ((a * b + x) % Q))
    wit = enc_elg.EncElgWitness(x, rho, b)
    measure("enc_elg", lambda: enc_elg.prove(ctx, pub, wit, rp.params, params, rng, paillier_sk=sk0),
            lambda p: enc_elg.verify(ctx, pub, p, rp.params, params, setup_secret=rp))

    # aff-g: the verifier owns N0 (its K is C); the prover owns N1
    gamma = random_scalar(rng)
    beta = rng.randbelow(1 << params.ell_prime)
    s_, r_ = sk0.public.random_rho(rng), sk1.public.random_rho(rng)
    D = gmpy2.powmod(C, gamma, sk0.public.N2) * sk0.public.encrypt(-beta, s_) % sk0.public.N2
    F = sk1.encrypt(beta, r_)
    apub = aff_g.AffGPublic(sk0.public, sk1.public, int(C), int(D), int(F), G * gamma)
    awit = aff_g.AffGWitness(gamma, beta, s_, r_)
    measure("aff_g", lambda: aff_g.prove(ctx, apub, awit, rp.params, params, rng, paillier_sk=sk1),
            lambda p: aff_g.verify(ctx, apub, p, rp.params, params, setup_secret=rp))
    measure("aff_g_star", lambda: aff_g_star.prove(ctx, apub, awit, params, rng, paillier_sk=sk1),
            lambda p: aff_g_star.verify(ctx, apub, p, params))

    y, lam = random_scalar(rng), random_scalar(rng)
    h = G * random_scalar(rng)
    X = G * random_scalar(rng)
    epub = elog.ElogPublic(G * lam, G * y + X * lam, X, h * y, h)
    measure("elog", lambda: elog.prove(ctx, epub, elog.ElogWitness(y, lam), rng),
            lambda p: elog.verify(ctx, epub, p))

    # dec: enc0(y, ρ) = K^x · D with y the unreduced plaintext
    k = random_scalar(rng)
    K = sk0.encrypt(k, sk0.public.random_rho(rng))
    Dd = sk0.encrypt(12345, sk0.public.random_rho(rng))
    comb = gmpy2.powmod(K, gamma, sk0.public.N2) * Dd % sk0.public.N2
    yv = int(sk0.decrypt_signed(comb))
    dpub = dec.DecPublic(sk0.public, int(K), G * gamma, int(Dd), G * (yv % Q), G, 3)
    dwit = dec.DecWitness(gamma, yv, int(sk0.recover_rho(comb, yv)))
    measure("dec", lambda: dec.prove(ctx, dpub, dwit, params, rng, paillier_sk=sk0),
            lambda p: dec.verify(ctx, dpub, p, params))
    return out


def _timed(fn: Callable[[], object]) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


# ----------------------------------------------------------------------------------------
# protocols in memory


def protocol_figures(bits: int, pool_factory: Callable[[str], PrimePool], reps: int = 3) -> list[Figure]:
    """``pool_factory(seed)``: a fresh pool over the same pre-generated primes for each keygen."""
    out: list[Figure] = []
    suffix = "" if bits == 3072 else f"_{bits}"
    keys = {}
    for n, t in ((3, 2), (5, 3)):
        times = []
        for r in range(reps if n == 3 else 1):
            start = time.perf_counter()
            keys[(n, t)] = simulate.keygen(n, t, paillier_bits=bits, rng=SeededRNG(f"k{n}{r}"),
                                           primes=pool_factory(f"bench-{n}-{r}"))
            times.append(time.perf_counter() - start)
        out.append(fig(f"inmemory_keygen_aux_{t}of{n}_pooled_primes_s{suffix}", statistics.median(times), "s",
                       detail=f"all {n} parties in one process, one core, primes from a pool"))
    for n_signers, (n, t) in ((2, (3, 2)), (3, (5, 3))):
        shares = keys[(n, t)][:n_signers]
        cpu, presigs = [], None
        for r in range(reps):
            start = time.process_time()
            presigs = simulate.presign(shares, rng=SeededRNG(f"p{r}"))
            cpu.append(time.process_time() - start)
        med = statistics.median(cpu)
        out.append(fig(f"inmemory_presign_{n_signers}signers_cpu_s{suffix}", med, "s",
                       spread=[round(min(cpu), 3), round(max(cpu), 3)],
                       detail=f"CPU seconds of all {n_signers} parties together"))
        out.append(fig(f"inmemory_presign_{n_signers}signers_cpu_per_party_s{suffix}", med / n_signers, "s"))
        d = hashlib.sha256(b"bench").digest()
        sign_t = []
        for r in range(reps):
            start = time.process_time()
            simulate.sign_with_presignature(shares, presigs, d, rng=SeededRNG(f"s{r}"))
            sign_t.append(time.process_time() - start)
        out.append(fig(f"inmemory_sign_presigned_{n_signers}signers_ms{suffix}", statistics.median(sign_t) * 1e3, "ms"))
        out.append(online_sign(shares, n_signers, suffix))
    out.append(modexp_floor(keys[(3, 2)][:2], bits, suffix, "2signers"))
    out.append(modexp_floor(keys[(5, 3)][:3], bits, suffix, "3signers"))
    return out


def online_sign(shares, n_signers: int, suffix: str, runs: int = 25) -> Figure:
    """The online step alone: both sign rounds of every signer from a presignature, in memory
    (CPU seconds of all signers together, median of ``runs``). The identity keys exist already,
    as in a node; each run signs from a fresh copy of one presignature decoded from its bytes
    (a benchmark only: a node's store refuses a second use)."""
    ids = Identities(sorted(s.index for s in shares), SeededRNG("online-ids"))
    blobs = [p.to_bytes() for p in simulate.presign(shares, rng=SeededRNG("online"))]
    d = hashlib.sha256(b"online").digest()
    cpu = []
    for r in range(runs + 1):
        presigs = [Presignature.from_bytes(b) for b in blobs]
        start = time.process_time()
        simulate.sign_with_presignature(shares, presigs, d, rng=SeededRNG(f"o{r}"), identities=ids)
        cpu.append(time.process_time() - start)
    cpu = cpu[1:]  # the first run warms per-type caches
    return fig(f"online_sign_inmemory_{n_signers}signers_ms{suffix}", statistics.median(cpu) * 1e3, "ms",
               spread=[round(min(cpu) * 1e3, 3), round(max(cpu) * 1e3, 3)], runs=runs,
               detail=f"CPU ms of all {n_signers} signers, both sign rounds, identity keys made beforehand")


def modexp_floor(shares, bits: int, suffix: str, label: str) -> Figure:
    """Presign CPU time / priced exponentiations (see the module docstring)."""
    model = CostModel(SeededRNG("cost"))
    simulate.presign(shares, rng=SeededRNG("warm"))  # warm the per-setup caches
    with counting_modexps() as log:
        simulate.presign(shares, rng=SeededRNG("floor"))
    cpu = min(_timed(lambda: simulate.presign(shares, rng=SeededRNG("floor"))) for _ in range(3))
    floor = sum(model.price(kind, m, e) for kind, m, e in log.calls)
    name = "modexp_floor_ratio" if (label == "3signers" and not suffix) else f"modexp_floor_ratio_{label}{suffix}"
    return fig(name, cpu / floor, "ratio", cpu_s=round(cpu, 3), floor_s=round(floor, 3),
               modexps=len(log.calls))
