"""FROST (issue 16) end to end over HTTPS: real node processes (LocalCluster: a SoftHSM2 token
per node, pinned mutual TLS between nodes, RFC 9421-signed client requests), 2-of-3 and 3-of-5,
both schemes (``bip340`` = schnorr-bip340, ``ed25519``).

    python -m bench.frost_e2e_bench [--sizes 3:2,5:3] [--keys 3] [--reps 7] [--pool 7]
    # or run(...) -> list[dict]; `python -m bench.run --only frost_e2e`

Per committee, one cluster (no Paillier: FROST keys need none; the test-only primes seed the
nodes' prime pools as in the other benchmarks, so nothing searches for primes meanwhile):

1. ``[frost] pool = 0`` (every signature runs both FROST rounds, nonces never stored):
   - ``frost_{s}_key_create_{t}of{n}_ms``: ``POST /v1/keys`` (scheme) to the committed key,
     the admin client's wait included (DKG, shares sealed by each node's HSM, two-phase
     commit), median of ``keys`` keys;
   - ``frost_{s}_sign_2round_{t}of{n}_p50_ms``: a client's signed request, the approval (the
     default policy's one approver) and the long-poll answer, t signers (node-1 coordinates),
     as ``sign_full_p50_ms`` / ``sign_presigned_p50_ms`` are measured; each signature verified
     (libsecp256k1 BIP340, OpenSSL Ed25519);
   - ``frost_{s}_sign_job_2round_{t}of{n}_ms``: those signatures' sign jobs as node-1 timed
     them (its ``appliance_job_duration_seconds`` histogram, as ``presign_2of3_ms``), mean;
2. Every node restarted with ``[frost] pool = pool``; once every existing key's pool is full, a
   new key per scheme (the only one filling) and its pool filled from empty:
   - ``frost_{s}_nonce_pool_fill_{t}of{n}_s``: key committed until every node's
     ``appliance_frost_nonces_available{key}`` reads n holders x ``pool`` (scraped every 50 ms;
     includes the filler's wait: it looks for work every 2 s);
   - ``frost_{s}_nonce_refill_per_s_{t}of{n}``: pairs one node makes per second while the n nodes
     fill theirs, from its first pair's ``created_at`` to its last (node.db, read-only), median
     over the nodes (each pair: an HSM key made, the pair sealed under it, its commitment
     signed by the node; each batch for another coordinator published in a ``frost_nonces``
     job);
   - ``frost_{s}_sign_pooled_{t}of{n}_p50_ms``: as the two-round figure, from a full pool
     (one online round); afterwards node-1's database is read to check that every timed
     signature used pooled commitments, and ``pairs_made_meanwhile`` counts the pairs any node
     made while they ran (a refill competing for the cores);
   - ``frost_{s}_sign_job_pooled_{t}of{n}_ms``: their sign jobs, node-1's time, mean.

Each figure carries ``runs``, ``min`` and ``max`` where it is a median or p50.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import sqlite3
import statistics
import time
from pathlib import Path

PRIMES = Path(__file__).resolve().parent.parent / "tests" / "data" / "test-only-primes.json"
SCHEMES = {"bip340": "schnorr-bip340", "ed25519": "ed25519"}
SIZES = ((3, 2), (5, 3))
SCRAPE_S = 0.05


def _fig(name: str, values: list[float], unit: str, detail: str, **extra) -> dict:
    digits = 1 if unit == "ms" else 3
    return {"name": name, "value": round(statistics.median(values), digits), "unit": unit, "runs": len(values),
            "min": round(min(values), digits), "max": round(max(values), digits), "detail": detail, **extra}


def _digest(*parts) -> bytes:
    return hashlib.sha256(("frost e2e bench " + " ".join(map(str, parts)) + str(time.time())).encode()).digest()


def _verify(scheme: str, public_key: str, digest: bytes, sig_hex: str) -> None:
    from coincurve import PublicKeyXOnly
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    sig, pk = bytes.fromhex(sig_hex), bytes.fromhex(public_key)
    if scheme == "schnorr-bip340":
        if not PublicKeyXOnly(pk).verify(sig, digest):
            raise AssertionError("libsecp256k1 rejects the BIP340 signature")
    else:
        Ed25519PublicKey.from_public_bytes(pk).verify(sig, digest)  # raises if invalid


def _available(metrics: str, key_id: str) -> int:
    m = re.search(rf'^appliance_frost_nonces_available\{{key="{re.escape(key_id)}"\}} (\S+)$', metrics, re.M)
    return int(float(m.group(1))) if m else 0


async def _counts(cluster, key_id: str) -> list[int]:
    return [_available(m, key_id) for m in await asyncio.gather(*(cluster.metrics(i) for i in range(cluster.n)))]


async def _fill(cluster, key_id: str, pool: int, timeout: float) -> float:
    """Wait until every node holds ``pool`` pairs per holder of the key (its gauge reads n x
    ``pool``): the seconds from now to full."""
    full = cluster.n * pool
    t0 = time.perf_counter()
    while True:
        counts = await _counts(cluster, key_id)
        if all(c >= full for c in counts):
            return time.perf_counter() - t0
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError(f"FROST nonce pool of {key_id} not full: {counts}, want {full} each")
        await asyncio.sleep(SCRAPE_S)


def _rows(cluster, i: int, sql: str, args: tuple) -> list[tuple]:
    con = sqlite3.connect(f"file:{cluster.data_dirs[i] / 'node.db'}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def _node_rates(cluster, key_id: str) -> list[float]:
    """Per node: its pairs of the key made per second, first pair's ``created_at`` to last's."""
    rates = []
    for i in range(cluster.n):
        c, first, last = _rows(cluster, i, "SELECT count(*), min(created_at), max(created_at) FROM frost_nonces "
                               "WHERE key_id = ?", (key_id,))[0]
        if c > 1 and last > first:
            rates.append((c - 1) / (last - first))
    return rates


def _made_since(cluster, since: float) -> int:
    """Pooled pairs (of any key) the nodes made since ``since`` (Unix time): a refill running
    beside the timed signatures."""
    return sum(_rows(cluster, i, "SELECT count(*) FROM frost_nonces WHERE created_at >= ?", (since,))[0][0]
               for i in range(cluster.n))


def _pooled_used(cluster, key_id: str) -> int:
    """node-1's (the coordinator's) pooled commitments of other signers handed to sign jobs."""
    return _rows(cluster, 0, "SELECT count(*) FROM frost_commitments WHERE key_id = ? AND state = 'used'",
                 (key_id,))[0][0]


def _sign_jobs(metrics: str, parties: int) -> tuple[float, float]:
    """(sum, count) of the node's ``appliance_job_duration_seconds`` for sign jobs of ``parties``."""
    def val(name: str) -> float:
        m = re.search(rf'^appliance_job_duration_seconds_{name}\{{kind="sign",parties="{parties}"\}} (\S+)$',
                      metrics, re.M)
        return float(m.group(1)) if m else 0.0
    return val("sum"), val("count")


async def _timed_signs(cluster, key: dict, scheme: str, reps: int, tag: str) -> tuple[list[float], float]:
    """End-to-end latencies (ms) of ``reps`` signatures, and the mean time (ms) of their sign
    jobs as node-1, the coordinator, timed them (its job histogram)."""
    from tests.signing_flow import sign

    ini, app = cluster.client("initiator", 0), cluster.client("approver", 0)
    t = key["threshold"]
    s0, c0 = _sign_jobs(await cluster.metrics(0), t)
    lat = []
    for r in range(reps):
        d = _digest(tag, r)
        t0 = time.perf_counter()
        done = await sign(ini, app, key["key_id"], d, timeout=300)
        lat.append((time.perf_counter() - t0) * 1000)
        _verify(scheme, key["public_key"], d, done["signature"]["sig"])
    s1, c1 = _sign_jobs(await cluster.metrics(0), t)
    if c1 - c0 != reps:
        raise AssertionError(f"node-1 coordinated {c1 - c0} sign jobs of {t} parties for {reps} signatures")
    return lat, (s1 - s0) / reps * 1000


async def _committee(n: int, t: int, keys: int, reps: int, pool: int) -> list[dict]:
    from appliance.testing import LocalCluster

    size = f"{t}of{n}"
    out: list[dict] = []
    async with LocalCluster(n, t, paillier_bits=2048, prime_file=PRIMES, round_timeout=60, job_timeout=300,
                            log_level="warning", startup_timeout=120) as cluster:
        admin = cluster.client("admin", 0)
        first: dict[str, dict] = {}
        made_keys: list[dict] = []
        # -- pool off: key creation, two-round signatures
        for short, scheme in SCHEMES.items():
            made = []
            for _ in range(keys):
                t0 = time.perf_counter()
                key = await admin.create_key(t, scheme=scheme, timeout=300)
                made.append((time.perf_counter() - t0) * 1000)
                first.setdefault(short, key)
                made_keys.append(key)
            out.append(_fig(f"frost_{short}_key_create_{size}_ms", made, "ms",
                            f"POST /v1/keys to committed key, {n} node processes, FROST DKG, HSM-sealed shares"))
            lat, job = await _timed_signs(cluster, first[short], scheme, reps, f"{size} {short} 2round")
            out.append(_fig(f"frost_{short}_sign_2round_{size}_p50_ms", lat, "ms",
                            f"client request + approval + answer, {t} signers, both FROST rounds ([frost] pool = 0)"))
            out.append({"name": f"frost_{short}_sign_job_2round_{size}_ms", "value": round(job, 1), "unit": "ms",
                        "jobs": len(lat), "detail": "the same signatures' sign jobs, coordinator's time, mean"})
        # -- pool on: every node restarted with [frost] pool
        for i in range(n):
            await cluster.stop_node(i)
            cluster.configure_node(i, "frost", pool=pool)
        await asyncio.gather(*(cluster.start_node(i) for i in range(n)))
        admin = cluster.client("admin", 0)
        for key in made_keys:  # every key made so far fills first: then only the new one does
            await _fill(cluster, key["key_id"], pool, timeout=600)
        for short, scheme in SCHEMES.items():
            key = await admin.create_key(t, scheme=scheme, timeout=300)
            total_s = await _fill(cluster, key["key_id"], pool, timeout=300)
            out.append({"name": f"frost_{short}_nonce_pool_fill_{size}_s", "value": round(total_s, 3), "unit": "s",
                        "pairs": n * n * pool, "detail": f"key committed to {pool} pairs per holder on each of "
                        f"{n} nodes ({n * n * pool} pairs), the filler's 2 s poll included"})
            out.append(_fig(f"frost_{short}_nonce_refill_per_s_{size}", _node_rates(cluster, key["key_id"]), "1/s",
                            f"pooled nonce pairs one node makes per second while the {n} nodes fill theirs (HSM "
                            "key + seal + signed commitment + publish job per batch), median over nodes",
                            pairs_per_node=n * pool))
            used, since = _pooled_used(cluster, key["key_id"]), time.time()
            lat, job = await _timed_signs(cluster, key, scheme, min(reps, pool), f"{size} {short} pooled")
            used = _pooled_used(cluster, key["key_id"]) - used
            refilled = _made_since(cluster, since)
            if used < len(lat) * (t - 1):
                raise AssertionError(f"{used} pooled commitments used for {len(lat)} signatures of {t} signers: "
                                     "not every timed signature was one round")
            out.append(_fig(f"frost_{short}_sign_pooled_{size}_p50_ms", lat, "ms",
                            f"client request + approval + answer, {t} signers, one online round over "
                            f"pooled nonces ([frost] pool = {pool}, full before the run)",
                            pairs_made_meanwhile=refilled))
            out.append({"name": f"frost_{short}_sign_job_pooled_{size}_ms", "value": round(job, 1), "unit": "ms",
                        "jobs": len(lat), "detail": "the same signatures' sign jobs, coordinator's time, mean"})
    return out


def run(sizes=SIZES, keys: int = 3, reps: int = 7, pool: int = 7) -> list[dict]:
    """Figures for each (nodes, threshold) in ``sizes`` (a list of {"name", "value", "unit", ...})."""
    out: list[dict] = []
    for n, t in sizes:
        out += asyncio.run(_committee(n, t, keys, reps, pool))
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="3:2,5:3")
    ap.add_argument("--keys", type=int, default=3)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--pool", type=int, default=7)
    args = ap.parse_args()
    sizes = tuple(tuple(int(x) for x in s.split(":")) for s in args.sizes.split(","))
    print(json.dumps(run(sizes, args.keys, args.reps, args.pool), indent=1))
