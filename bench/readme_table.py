"""Print the README's figures table from bench/results.json (`python -m bench.readme_table`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).with_name("results.json")

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
        print(f"\n**{title}**\n\n| figure | value | unit |\n|---|---:|---|")
        for f in rows:
            seen.add(f["name"])
            spread = f" ({f['min']} to {f['max']}, {f['runs']} runs)" if "runs" in f and "min" in f else ""
            print(f"| `{f['name']}` | {f['value']}{spread} | {f['unit']} |")
    rest = [f for f in figures if f["name"] not in seen and not f["name"].startswith("bench_meta")]
    if rest:
        print("\n**Other**\n\n| figure | value | unit |\n|---|---:|---|")
        for f in rest:
            print(f"| `{f['name']}` | {f['value']} | {f['unit']} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS)
