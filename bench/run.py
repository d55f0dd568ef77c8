"""`make bench`: run every benchmark and write bench/results.json (a list of
{"name", "value", "unit", ...}); print the same JSON.

    python -m bench.run [--quick] [--only crypto,frost,frost_e2e,hsm,e2e,committee,online,lifecycle,keys]

With ``--only`` naming fewer sections than all, the run's figures are merged into the existing
bench/results.json (a figure of the same name replaced, every other kept; the run's meta as
``bench_meta_<sections>``), and bench/latency.png is redrawn only when ``committee`` ran.

Key lifecycle (refresh and reshare of a 2-of-3 and a 3-of-5 key, end to end) comes from
bench/lifecycle_bench.py; keys at scale (a key from pooled aux-info, ``key_create_2of3_ms_2048``)
from bench/keys_bench.py (``--only keys``; the 1,000-key run is ``make bench-keys``).

FROST (threshold Schnorr, BIP340 and Ed25519) in memory: keygen, nonce generation (a nonce
pool's refill unit), sign p50, refresh and reshare for 2-of-3 and 3-of-5, from
bench/frost_bench.py (``--only frost``); over HTTPS with real node processes (key creation, sign
p50 with the nonce pool off and on, pool refill rate) from bench/frost_e2e_bench.py
(``--only frost_e2e``).

Committee sizes (2-of-3, 3-of-5, 5-of-7, end to end, medians with spread) come from
bench/committee_bench.py, which also draws bench/latency.png (latency against committee size).
The online path (``--only online``, bench/online_bench.py): presigned signatures under the
auto-approval rule from a warm pool, ``sign_presigned_p99_ms``, a per-stage breakdown, and
``sustained_sign_2of3_per_s`` / ``sustained_sign_3of5_per_s`` with their p99 and a lost /
duplicated check over the node databases; each figure's definition is in that module.

Primes for the in-memory protocol benchmarks are generated fresh (in parallel processes) once
per run and re-served to every keygen, so that keygen figures measure the protocol, and the
safe-prime generation figures measure the prime search.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from appliance.tss.group import SeededRNG, SystemRNG
from appliance.tss.primes import PrimePool, random_blum_prime, random_safe_prime

RESULTS = Path(__file__).with_name("results.json")
SECTIONS = ("crypto", "frost", "frost_e2e", "hsm", "e2e", "committee", "online", "lifecycle", "keys")


def _safe(bits: int) -> int:
    return random_safe_prime(bits, SystemRNG())


def _blum(bits: int) -> int:
    return random_blum_prime(bits, SystemRNG())


def fresh_prime_lists(bits: int, count: int) -> tuple[list[int], list[int]]:
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as ex:
        safe = list(ex.map(_safe, [bits // 2] * count))
        blum = list(ex.map(_blum, [bits // 2] * count))
    return safe, blum


def pool_factory(bits: int, safe: list[int], blum: list[int]):
    return lambda seed: PrimePool({bits // 2: safe}, {bits // 2: blum})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, 2048 bits only")
    ap.add_argument("--only", default=",".join(SECTIONS))
    args = ap.parse_args()
    only = set(args.only.split(","))
    if only - set(SECTIONS):
        ap.error(f"unknown sections {sorted(only - set(SECTIONS))}; known: {','.join(SECTIONS)}")
    sizes = (2048,) if args.quick else (2048, 3072)
    figures: list[dict] = []
    started = time.time()

    def add(items: list[dict], section: str) -> None:
        for item in items:
            item.setdefault("section", section)
        figures.extend(items)
        print(f"[bench] {section}: {len(items)} figures", file=sys.stderr)

    if "crypto" in only:
        from bench import crypto_bench

        rng = SeededRNG(os.urandom(16))
        for bits in sizes:
            add(crypto_bench.modexp_unit_costs(bits, rng), f"modexp {bits}")
            add([crypto_bench.safe_prime_generation(bits // 2, 5 if bits == 2048 else 3, rng)], "safe primes")
            safe, blum = fresh_prime_lists(bits, 10)
            factory = pool_factory(bits, safe, blum)
            add(crypto_bench.proof_figures(bits, factory("proofs"), rng, reps=1 if args.quick else 3),
                f"proofs {bits}")
            add(crypto_bench.protocol_figures(bits, factory, reps=1 if (args.quick or bits == 3072) else 3),
                f"protocols {bits}")
    if "frost" in only:
        from bench import frost_bench

        add(frost_bench.run(quick=args.quick), "frost in memory")
    if "frost_e2e" in only:
        try:
            from bench import frost_e2e_bench

            add(frost_e2e_bench.run(reps=5 if args.quick else 7), "frost e2e")
        except Exception as exc:
            print(f"[bench] FROST end-to-end benchmark failed: {exc!r}", file=sys.stderr)
    if "hsm" in only:
        try:
            from bench import hsm_bench

            add(hsm_bench.run(), "hsm")
        except Exception as exc:  # reported, not hidden
            print(f"[bench] hsm benchmark failed: {exc!r}", file=sys.stderr)
    if "e2e" in only:
        try:
            from bench import e2e_bench

            for bits in sizes:
                add(e2e_bench.run(bits), f"e2e {bits}")
        except Exception as exc:
            print(f"[bench] end-to-end benchmark failed: {exc!r}", file=sys.stderr)

    if "committee" in only:
        try:
            from bench import committee_bench

            seen = {f["name"] for f in figures}
            rows = committee_bench.run(2048, reps=2 if args.quick else 3)
            for f in rows:  # the 2-of-3 ones may repeat e2e names: keep those unique
                if f["name"] in seen:
                    f["name"] = "committee_" + f["name"]
            add(rows, "committee 2048")
        except Exception as exc:
            print(f"[bench] committee benchmark failed: {exc!r}", file=sys.stderr)
    if "committee" in only:  # the plot draws the committee figures: without them it stays as it is
        try:
            from bench import committee_bench

            png = committee_bench.plot(figures, RESULTS.with_name("latency.png"))
            print(f"[bench] plot: {png}", file=sys.stderr)
        except Exception as exc:
            print(f"[bench] plot failed: {exc!r}", file=sys.stderr)

    if "online" in only:
        try:
            from bench import online_bench

            add(online_bench.run(2048, burst=40 if args.quick else 60), "online 2048")
        except Exception as exc:
            print(f"[bench] online-path benchmark failed: {exc!r}", file=sys.stderr)

    if "lifecycle" in only:
        try:
            from bench import lifecycle_bench

            for bits in sizes:
                add(lifecycle_bench.run(bits), f"lifecycle {bits}")
        except Exception as exc:
            print(f"[bench] key-lifecycle benchmark failed: {exc!r}", file=sys.stderr)
    if "keys" in only:
        try:
            from bench import keys_bench

            add(keys_bench.run(reps=5 if args.quick else 15), "keys 2048")
        except Exception as exc:
            print(f"[bench] keys benchmark failed: {exc!r}", file=sys.stderr)
    partial = only != set(SECTIONS)
    meta = {"name": "bench_meta" + ("_" + "_".join(sorted(only)) if partial else ""),
            "value": round(time.time() - started, 1), "unit": "s",
            "machine": f"{platform.machine()} {os.cpu_count()} cores", "python": platform.python_version()}
    figures.append(meta)
    RESULTS.write_text(json.dumps(merge(RESULTS, figures) if partial else figures, indent=1))
    print(json.dumps(figures, indent=1))


def merge(path: Path, figures: list[dict]) -> list[dict]:
    """The figures of ``path`` (if any) with ``figures`` in: one of the same name replaced in
    place, new ones appended."""
    try:
        old = json.loads(path.read_text())
    except FileNotFoundError:
        return figures
    new = {f["name"]: f for f in figures}
    out = [new.pop(f["name"], f) for f in old]
    return out + [f for f in figures if f["name"] in new]


if __name__ == "__main__":
    main()
