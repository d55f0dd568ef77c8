"""End-to-end figures over HTTPS with 3 real node processes (LocalCluster: SoftHSM2 token per
node, pinned mutual TLS between nodes, RFC 9421-signed client requests).

    python -m bench.e2e_bench [--bits 2048]         # or: run(paillier_bits) -> list[dict]

Phase A (no presignature pools): DKG 2-of-3 and 3-of-3 (``keygen_2of3_s``), full signatures
(presign + sign on demand) with 2 signers (``sign_full_p50_ms``/``p95``) and 3 signers
(``sign_full_3signers_p50_ms``), /healthz latency while 8 full signatures run at once.
Phase B (node-1 restarted with a presignature pool; it alone fills, one presign at a time):
presign jobs as timed by their coordinator (``presign_2of3_ms``, ``presign_3of3_ms``) and
signatures that use a stored presignature (``sign_presigned_p50_ms``/``p95``), each measured
from the client: signed request, approval (the default policy's one approver), quorum check,
job, signature, long-poll answer.

Names carry no suffix at 3072 bits and ``_2048`` at 2048 (as the other benchmarks). Prime pools
are seeded from the test-only prime file through the nodes' configuration, so keygen measures
the protocol, not the prime search.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import statistics
import time
from pathlib import Path

PRIMES = Path(__file__).resolve().parent.parent / "tests" / "data" / "test-only-primes.json"


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values``, interpolated between the two nearest ranks (NaN if empty)."""
    v = sorted(values)
    if not v:
        return float("nan")
    k = (len(v) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def _hist(metrics: str, kind: str, parties: int) -> tuple[float, float]:
    def val(name: str) -> float:
        m = re.search(rf'^appliance_job_duration_seconds_{name}\{{kind="{kind}",parties="{parties}"\}} (\S+)$',
                      metrics, re.M)
        return float(m.group(1)) if m else 0.0
    return val("sum"), val("count")


async def _run(bits: int, full_reps: int, presig_pool: int) -> list[dict]:
    from appliance.testing import LocalCluster
    from tests.cluster_fixtures import check_signature

    suffix = "" if bits == 3072 else f"_{bits}"
    out: list[dict] = []

    def fig(name: str, value: float, unit: str, **extra) -> None:
        out.append({"name": name + suffix, "value": round(value, 3 if unit == "s" else 1), "unit": unit,
                    "paillier_bits": bits, **extra})

    def digest(i) -> bytes:
        return hashlib.sha256(f"e2e bench {bits} {i} {time.time()}".encode()).digest()

    async with LocalCluster(3, 2, paillier_bits=bits, prime_file=PRIMES, presign_pool=0,
                            round_timeout=60, job_timeout=600, log_level="warning") as cluster:
        admin = cluster.client("admin", 0)
        ini = [cluster.client("initiator", i) for i in range(3)]
        app = [cluster.client("approver", i) for i in range(3)]  # the default policy's approval step
        # -- phase A: keygen, full signatures
        t = time.perf_counter()
        key = await admin.create_key(2)
        fig("keygen_2of3_s", time.perf_counter() - t, "s", detail="DKG + aux-info, 3 node processes")
        t = time.perf_counter()
        key3 = await admin.create_key(3)
        fig("keygen_3of3_s", time.perf_counter() - t, "s")
        lat = []
        for i in range(full_reps):
            d = digest(i)
            t = time.perf_counter()
            done = await ini[i % 3].sign(key["key_id"], d, timeout=600, approver=app[i % 3])
            lat.append((time.perf_counter() - t) * 1000)
            check_signature(key["public_key"], d, done["signature"])
        fig("sign_full_p50_ms", statistics.median(lat), "ms", detail="2 signers, presign + sign on demand",
            samples=len(lat))
        fig("sign_full_p95_ms", percentile(lat, 0.95), "ms")
        lat3 = []
        for i in range(max(3, full_reps // 2)):
            d = digest(f"3-{i}")
            t = time.perf_counter()
            done = await ini[i % 3].sign(key3["key_id"], d, timeout=600, approver=app[i % 3])
            lat3.append((time.perf_counter() - t) * 1000)
            check_signature(key3["public_key"], d, done["signature"])
        fig("sign_full_3signers_p50_ms", statistics.median(lat3), "ms", samples=len(lat3))
        fig("sign_full_3signers_p95_ms", percentile(lat3, 0.95), "ms")
        # /healthz while 8 full signatures run at once
        health: list[float] = []
        stop = asyncio.Event()

        async def poll() -> None:
            while not stop.is_set():
                t0 = time.perf_counter()
                await admin.healthz()
                health.append((time.perf_counter() - t0) * 1000)
                await asyncio.sleep(0.02)

        poller = asyncio.create_task(poll())
        t = time.perf_counter()
        await asyncio.gather(*(ini[i % 3].sign(key["key_id"], digest(f"load {i}"), timeout=600, approver=app[i % 3]) for i in range(8)))
        load_s = time.perf_counter() - t
        stop.set()
        await poller
        fig("sign_full_8concurrent_throughput_per_s", 8 / load_s, "1/s")
        fig("healthz_under_load_p50_ms", statistics.median(health), "ms", samples=len(health))
        fig("healthz_under_load_p95_ms", percentile(health, 0.95), "ms")
        fig("healthz_under_load_max_ms", max(health), "ms")
        # -- phase B: node-1 keeps a presignature pool
        await cluster.stop_node(0)
        cluster.configure_node(0, "node", presign_pool=presig_pool)
        await cluster.start_node(0)
        admin = cluster.client("admin", 0)
        c1 = cluster.client("initiator", 0)
        a1 = cluster.client("approver", 0)
        want = {"node-1,node-2": presig_pool, "node-1,node-3": presig_pool}
        deadline = time.monotonic() + 900
        while True:
            k2, k3 = await admin.get_key(key["key_id"]), await admin.get_key(key3["key_id"])
            if all(k2["presignatures"].get(s, 0) >= n for s, n in want.items()) and \
                    k3["presignatures"].get("node-1,node-2,node-3", 0) >= presig_pool:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"presignature pools not filled: {k2['presignatures']} {k3['presignatures']}")
            await asyncio.sleep(0.5)
        m = await admin.metrics()
        s2, n2 = _hist(m, "presign", 2)
        s3, n3 = _hist(m, "presign", 3)
        fig("presign_2of3_ms", s2 / n2 * 1000, "ms", detail="presign job of 2 signers over HTTPS, coordinator's time",
            samples=int(n2))
        fig("presign_3of3_ms", s3 / n3 * 1000, "ms", detail="presign job of 3 signers (3-of-3 key)", samples=int(n3))
        lat = []
        for i in range(2 * presig_pool):
            d = digest(f"pre {i}")
            t = time.perf_counter()
            req = await c1.request_signature(key["key_id"], d)
            await a1.approve(req["request_id"])
            done = await c1.wait_signature(req["request_id"], timeout=60)
            lat.append((time.perf_counter() - t) * 1000)
            check_signature(key["public_key"], d, done["signature"])
        fig("sign_presigned_p50_ms", statistics.median(lat), "ms",
            detail="client request to signature, a stored presignature per signature", samples=len(lat))
        fig("sign_presigned_p95_ms", percentile(lat, 0.95), "ms")
        m = await admin.metrics()
        used = re.search(r'^appliance_job_duration_seconds_count\{kind="sign",parties="2"\} (\S+)$', m, re.M)
        out[-1]["detail"] = f"sign jobs coordinated by node-1: {used.group(1) if used else '?'}"
    return out


def run(paillier_bits: int = 3072) -> list[dict]:
    """Figures for one modulus size (a list of {"name", "value", "unit", ...})."""
    quick = paillier_bits == 2048
    return asyncio.run(_run(paillier_bits, full_reps=10 if quick else 5, presig_pool=10 if quick else 5))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--bits", type=int, nargs="+", default=[2048])
    args = ap.parse_args()
    res = []
    for b in args.bits:
        res += run(b)
    print(json.dumps(res, indent=1))
