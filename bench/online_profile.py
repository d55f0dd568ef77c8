"""Profile the online signing step (both sign rounds, every signer, in memory) with cProfile.

    python -m bench.online_profile [--signers 2,3] [--runs 200] [--rows 15]

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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--signers", default="2,3")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--rows", type=int, default=15)
    args = ap.parse_args()
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
