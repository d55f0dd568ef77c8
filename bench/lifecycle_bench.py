"""Key-lifecycle figures end to end over HTTPS with real node processes (LocalCluster: SoftHSM2
token per node, pinned mutual TLS, RFC 9421-signed admin requests): how long a proactive refresh
and a reshare take for a 2-of-3 and a 3-of-5 key.

    python -m bench.lifecycle_bench [--bits 2048] [--sizes 3:2,5:3]   # or run(bits) -> list[dict]

- ``refresh_{t}of{n}_s``: admin request to a finished refresh (aux-info with fresh Paillier and
  ring-Pedersen keys on every node, zero re-shared; committed, then finalized: old shares and
  presignatures destroyed on every node), median of ``runs``;
- ``reshare_{t}of{n}_s``: admin request to a finished reshare of the key onto the same
  committee and threshold (t holders send, every member gets a new share at a new evaluation
  point, then aux-info on the committee, commit, finalize).

Names carry ``_2048`` at 2048 bits (no suffix at 3072), as the other benchmarks. Prime pools are
seeded from the test-only prime file through the nodes' configuration, so the figures measure
the protocols, not the prime search; the file holds enough 1536-bit primes for the 2-of-3 runs
at 3072 bits only (``sizes_for``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

PRIMES = Path(__file__).resolve().parent.parent / "tests" / "data" / "test-only-primes.json"


def sizes_for(bits: int) -> tuple[tuple[int, int], ...]:
    """(n, t) committees measured at this modulus size (bounded by the test-only primes: every
    aux-info run takes two safe primes per node)."""
    return ((3, 2), (5, 3)) if bits == 2048 else ((3, 2),)


async def _committee(bits: int, n: int, t: int, refreshes: int) -> list[dict]:
    from appliance.testing import LocalCluster

    suffix = "" if bits == 3072 else f"_{bits}"
    out: list[dict] = []
    async with LocalCluster(n, t, paillier_bits=bits, prime_file=PRIMES, presign_pool=0, round_timeout=120,
                            job_timeout=900, log_level="warning") as cluster:
        admin = cluster.client("admin", 0)
        key = await admin.create_key(t)
        times = []
        for _ in range(refreshes):
            t0 = time.perf_counter()
            op = await admin.refresh(key["key_id"], timeout=900)
            times.append(time.perf_counter() - t0)
            assert op["result"]["public_key"] == key["public_key"] and op["result"]["finalized"]
        out.append({"name": f"refresh_{t}of{n}_s{suffix}", "value": round(statistics.median(times), 3),
                    "unit": "s", "runs": len(times), "min": round(min(times), 3), "max": round(max(times), 3),
                    "paillier_bits": bits,
                    "detail": f"{n} node processes: aux-info + zero re-shared, commit, finalize"})
        t0 = time.perf_counter()
        op = await admin.reshare(key["key_id"], t, cluster.node_ids, timeout=900)
        took = time.perf_counter() - t0
        assert op["result"]["public_key"] == key["public_key"] and op["result"]["finalized"]
        out.append({"name": f"reshare_{t}of{n}_s{suffix}", "value": round(took, 3), "unit": "s", "runs": 1,
                    "paillier_bits": bits,
                    "detail": f"onto the same {n} nodes: {t} senders, new shares, aux-info, commit, finalize"})
    return out


def run(paillier_bits: int = 3072, sizes: tuple[tuple[int, int], ...] | None = None) -> list[dict]:
    """Figures for one modulus size (a list of {"name", "value", "unit", ...})."""
    out: list[dict] = []
    for n, t in sizes or sizes_for(paillier_bits):
        refreshes = 3 if (paillier_bits == 2048 and n == 3) else (2 if paillier_bits == 2048 else 1)
        out += asyncio.run(_committee(paillier_bits, n, t, refreshes))
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--bits", type=int, nargs="+", default=[2048])
    ap.add_argument("--sizes", help="n:t,... (default per size)")
    args = ap.parse_args()
    sizes = tuple(tuple(int(x) for x in s.split(":")) for s in args.sizes.split(",")) if args.sizes else None
    res = []
    for b in args.bits:
        res += run(b, sizes)
    print(json.dumps(res, indent=1))
