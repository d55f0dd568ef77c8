"""Profile the online signing step (both sign rounds, every signer, in memory) with cProfile.

    python -m bench.online_profile [--signers 2,3] [--runs 200] [--rows 15]
    python -m bench.online_profile --identity-algorithms   # the message-signature candidates

Keys are 2-of-3 (2 signers) and 3-of-5 (3 signers) with 2048-bit Paillier, from a keygen whose
primes come from the test-only prime file (a profile, not a security setting). Each run signs
from a fresh copy of one presignature decoded from its bytes, with identity keys made
beforehand, as ``bench/crypto_bench.online_sign`` measures it. Prints the CPU median without
the profiler, then the profile's top entries by total (own) time and by cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import pstats
import statistics
import time
from pathlib import Path

from appliance.tss import simulate
from appliance.tss.group import SeededRNG
from appliance.tss.presign import Presignature
from appliance.tss.primes import PrimePool
from appliance.tss.runner import Identities

PRIMES = Path(__file__).resolve().parent.parent / "tests" / "data" / "test-only-primes.json"
COMMITTEE = {2: (3, 2), 3: (5, 3)}


def _setup(n_signers: int):
    n, t = COMMITTEE[n_signers]
    pool = PrimePool.from_file(PRIMES, shuffle_seed=f"online-{n}".encode())
    shares = simulate.keygen(n, t, paillier_bits=2048, rng=SeededRNG(f"online-{n}"), primes=pool)[:n_signers]
    blobs = [p.to_bytes() for p in simulate.presign(shares, rng=SeededRNG("online"))]
    ids = Identities(sorted(s.index for s in shares), SeededRNG("online-ids"))
    return shares, blobs, ids


def _sign_runs(shares, blobs, ids, runs: int, profile: cProfile.Profile | None = None) -> list[float]:
    d = hashlib.sha256(b"online").digest()
    cpu = []
    for r in range(runs):
        presigs = [Presignature.from_bytes(b) for b in blobs]
        start = time.process_time()
        if profile is not None:
            profile.enable()
        simulate.sign_with_presignature(shares, presigs, d, rng=SeededRNG(f"o{r}"), identities=ids)
        if profile is not None:
            profile.disable()
        cpu.append(time.process_time() - start)
    return cpu


def _per_call_us(fn, n: int = 5000) -> float:
    fn()
    start = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - start) / n * 1e6


def identity_algorithms() -> None:
    """CPU µs per sign and verify of a 32-byte digest: the message-signature candidates."""
    import coincurve
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from appliance.tss.protocol import IdentityDirectory, SoftwareSigner

    d = hashlib.sha256(b"identity").digest()
    ecdsa = SoftwareSigner.generate(SeededRNG("identity"))
    directory = IdentityDirectory({1: ecdsa.public_key()})
    sig = ecdsa.sign(d)
    rows = [("secp256k1 ECDSA, libsecp256k1 (coincurve): ours", lambda: ecdsa.sign(d),
             lambda: directory.verify(1, d, sig))]
    key = coincurve.PrivateKey(bytes(31) + b"\x07")
    xonly = coincurve.PublicKeyXOnly(key.public_key.format()[1:])
    sch = key.sign_schnorr(d)
    rows.append(("secp256k1 BIP340, libsecp256k1 (coincurve)", lambda: key.sign_schnorr(d),
                 lambda: xonly.verify(sch, d)))
    ed = Ed25519PrivateKey.from_private_bytes(bytes(32))
    edpub, edsig = ed.public_key(), ed.sign(d)
    rows.append(("Ed25519, OpenSSL (cryptography)", lambda: ed.sign(d), lambda: edpub.verify(edsig, d)))
    print("| identity signature | sign µs | verify µs |\n|---|---:|---:|")
    for name, sign, verify in rows:
        print(f"| {name} | {_per_call_us(sign):.1f} | {_per_call_us(verify):.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--signers", default="2,3")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--rows", type=int, default=15)
    ap.add_argument("--identity-algorithms", action="store_true",
                    help="only compare the per-message signature candidates")
    args = ap.parse_args()
    if args.identity_algorithms:
        identity_algorithms()
        return
    for n_signers in (int(x) for x in args.signers.split(",")):
        shares, blobs, ids = _setup(n_signers)
        _sign_runs(shares, blobs, ids, 5)  # warm per-type caches
        cpu = _sign_runs(shares, blobs, ids, args.runs)
        print(f"## {n_signers} signers: CPU median {statistics.median(cpu) * 1e3:.3f} ms "
              f"(min {min(cpu) * 1e3:.3f}, max {max(cpu) * 1e3:.3f}) over {args.runs} runs, no profiler")
        prof = cProfile.Profile()
        _sign_runs(shares, blobs, ids, args.runs, prof)
        for key in ("tottime", "cumulative"):
            out = io.StringIO()
            pstats.Stats(prof, stream=out).strip_dirs().sort_stats(key).print_stats(args.rows)
            print(f"### by {key} ({args.runs} runs)")
            print(out.getvalue().split("\n\n", 2)[-1].rstrip())


if __name__ == "__main__":
    main()
