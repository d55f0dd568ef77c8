"""HSM benchmark: seal/unseal latency and throughput through the single PKCS#11 worker,
and the cost of a per-presignature key. Self-contained: makes its own temporary SoftHSM2
token (hsm.softhsm.init_token) and removes it.

    run() -> [{"name": ..., "value": ..., "unit": ...}, ...]

Run alone: ``python -m bench.hsm_bench``. Note: a process uses one SoftHSM configuration
at a time (see hsm.worker); run() needs no other token of another configuration open in
the calling process.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time

from appliance.sealed import SealContext
from hsm import HSM
from hsm.softhsm import init_token

SEAL_N = 400
PRESIG_N = 40
PAYLOAD = 800  # bytes, about a 3072-bit Paillier secret key share of a presignature


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def _ms(x: float) -> float:
    return round(x * 1000, 4)


def run(seal_n: int = SEAL_N, presig_n: int = PRESIG_N) -> list[dict]:
    results: list[dict] = []

    def add(name: str, value: float, unit: str) -> None:
        results.append({"name": name, "value": value, "unit": unit})

    with tempfile.TemporaryDirectory(prefix="hsm-bench-") as d:
        t0 = time.perf_counter()
        tok = init_token(os.path.join(d, "hsm"), "bench")
        add("hsm_token_init_ms", _ms(time.perf_counter() - t0), "ms")
        t0 = time.perf_counter()
        h = HSM.open(tok.hsm_config(), node_id="bench-node")
        add("hsm_open_create_keys_ms", _ms(time.perf_counter() - t0), "ms")
        try:
            ctx = SealContext("share", "bench-key", 0)
            data = os.urandom(PAYLOAD)
            for _ in range(20):  # warm up
                h.unseal(ctx, h.seal(ctx, data))

            seal_t, unseal_t, blobs = [], [], []
            for _ in range(seal_n):
                t = time.perf_counter()
                b = h.seal(ctx, data)
                seal_t.append(time.perf_counter() - t)
                blobs.append(b)
            for b in blobs:
                t = time.perf_counter()
                h.unseal(ctx, b)
                unseal_t.append(time.perf_counter() - t)
            add("hsm_seal_p50_ms", _ms(statistics.median(seal_t)), "ms")
            add("hsm_seal_p95_ms", _ms(_pct(seal_t, 0.95)), "ms")
            add("hsm_unseal_p50_ms", _ms(statistics.median(unseal_t)), "ms")
            add("hsm_unseal_p95_ms", _ms(_pct(unseal_t, 0.95)), "ms")

            async def burst(tasks: int) -> float:
                per = seal_n // tasks

                async def one():
                    for _ in range(per):
                        await h.unseal_async(ctx, await h.seal_async(ctx, data))

                t = time.perf_counter()
                await asyncio.gather(*(one() for _ in range(tasks)))
                return (per * tasks * 2) / (time.perf_counter() - t)

            add("hsm_seal_unseal_async_ops_per_s", round(asyncio.run(burst(50)), 1), "ops/s")
            t = time.perf_counter()
            for b in blobs:
                h.unseal(ctx, b)
            add("hsm_unseal_sync_ops_per_s", round(len(blobs) / (time.perf_counter() - t), 1),
                "ops/s")

            create_t, consume_t = [], []
            for _ in range(presig_n):
                pctx = SealContext.presignature("bench-key", 0, os.urandom(32),
                                                b"\x02" + os.urandom(32), (0, 1))
                t = time.perf_counter()
                pb = h.seal_presignature(pctx, data)
                create_t.append(time.perf_counter() - t)
                t = time.perf_counter()
                h.consume_presignature(pctx, pb)
                consume_t.append(time.perf_counter() - t)
            add("hsm_presig_key_create_seal_p50_ms", _ms(statistics.median(create_t)), "ms")
            add("hsm_presig_key_create_seal_p95_ms", _ms(_pct(create_t, 0.95)), "ms")
            add("hsm_presig_unseal_destroy_p50_ms", _ms(statistics.median(consume_t)), "ms")
            add("hsm_presig_unseal_destroy_p95_ms", _ms(_pct(consume_t, 0.95)), "ms")

            digest = os.urandom(32)
            sign_t = []
            for _ in range(100):
                t = time.perf_counter()
                h.sign_digest(digest)
                sign_t.append(time.perf_counter() - t)
            add("hsm_identity_sign_p50_ms", _ms(statistics.median(sign_t)), "ms")
        finally:
            h.close()
    return results


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
