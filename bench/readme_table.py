"""Print the README's figures table from bench/results.json (`python -m bench.readme_table`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).with_name("results.json")

#: what each end-to-end figure measures, printed next to it (name without the ``_2048``
#: suffix or a ``committee_`` prefix; ``{c}``: any committee such as ``2of3``). The clock is
#: the client's unless said otherwise.
DEFINITIONS = {
    "keygen_2of3_s": "client request to committed key: DKG + aux-info, pooled primes",
    "presign_2of3_ms": "one pooled presign job, coordinator's job time (pool refill at node-1)",
    "presign_3of3_ms": "one pooled presign job of 3 signers, coordinator's job time",
    "sign_full_p50_ms": "request + approval to signature, no pool: presign and sign on demand",
    "sign_presigned_p50_ms": "request + approval to signature, warm pool (no refill running)",
    "sign_presigned_auto_p50_ms": "request to signature, no approval (auto rule), warm pool",
    "sign_presigned_p99_ms": "as sign_presigned_auto_p50_ms, 99th percentile",
    "keygen_{c}_s": "client request to committed key: DKG + aux-info",
    "sign_full_{c}_ms": "request + approval to signature, presign and sign on demand, alone",
    "presign_{c}_ms": "one pool refill presign job, coordinator's job time",
    "sign_presigned_{c}_ms": "request + approval to signature, warm pool (no refill running)",
    "sustained_sign_{c}_per_s": "signatures/s, concurrent clients, auto rule, warm pool",
    "sustained_sign_{c}_p99_ms": "each request's latency in the sustained run, 99th percentile",
    "sustained_sign_{c}_p50_ms": "each request's latency in the sustained run, median",
    "sustained_sign_{c}_refill_jobs": "presign jobs node-1 ran during the sustained run",
    "sustained_sign_{c}_lost": "requests not signed, read from node-1's database (must be 0)",
    "sustained_sign_{c}_duplicated": "presignatures or signer marks used twice (must be 0)",
}


def definition(name: str) -> str:
    stem = name.removeprefix("committee_").replace("_2048", "")
    if stem in DEFINITIONS:
        return DEFINITIONS[stem]
    for c in ("2of3", "3of5", "5of7"):
        if f"_{c}_" in stem + "_":
            return DEFINITIONS.get(stem.replace(c, "{c}"), "")
    return ""

SECTIONS = [
    ("Contract figures (DESIGN.md)", lambda n: n.split("_2048")[0] in {
        "keygen_2of3_s", "presign_2of3_ms", "presign_3of3_ms", "sign_presigned_p50_ms",
        "sign_full_p50_ms", "modexp_floor_ratio"} or n.startswith("modexp_floor_ratio")),
    ("Protocols in memory", lambda n: n.startswith("inmemory_")),
    ("FROST end to end over HTTPS (median with min to max)", lambda n: n.startswith("frost_") and any(
        f"_{part}_" in n for part in ("key_create", "sign_2round", "sign_pooled", "sign_job", "nonce_pool_fill", "nonce_refill"))),
    ("FROST in memory (threshold Schnorr, median with min to max)", lambda n: n.startswith("frost_")),
    ("Proofs", lambda n: n.startswith("zk_")),
    ("Exponentiation and primes", lambda n: n.startswith(("modexp_", "paillier_", "safe_prime"))),
    ("HSM", lambda n: n.startswith(("hsm_", "seal", "unseal", "presig_key"))),
    ("Key lifecycle (end to end, request to finalized)", lambda n: n.startswith(("refresh_", "reshare_"))),
    ("Online path (bench/online_bench.py: auto-approval rule, warm pool; stages in ms per signature, "
     "summed over the nodes)", lambda n: "_stage_" in n or n.startswith(
         ("sign_presigned_auto", "sign_presigned_p99", "sustained_sign_"))),
    ("Committee size (end to end, median with min to max)", lambda n: any(
        f"_{c}_" in n + "_" for c in ("3of5", "5of7")) or n.startswith("sustained_")),
    ("End to end over HTTPS", lambda n: n.startswith(("e2e_", "sign_", "keygen_", "presign_", "healthz"))),
]


def main(path: Path = RESULTS) -> None:
    figures = json.loads(path.read_text())
    seen: set[str] = set()
    for title, match in SECTIONS:
        rows = [f for f in figures if f["name"] not in seen and match(f["name"])]
        if not rows:
            continue
        print(f"\n**{title}**\n\n| figure | value | unit | what it measures |\n|---|---:|---|---|")
        for f in rows:
            seen.add(f["name"])
            spread = f" ({f['min']} to {f['max']}, {f['runs']} runs)" if "runs" in f and "min" in f else ""
            print(f"| `{f['name']}` | {f['value']}{spread} | {f['unit']} | {definition(f['name'])} |")
    rest = [f for f in figures if f["name"] not in seen and not f["name"].startswith("bench_meta")]
    if rest:
        print("\n**Other**\n\n| figure | value | unit |\n|---|---:|---|")
        for f in rest:
            print(f"| `{f['name']}` | {f['value']} | {f['unit']} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS)
