"""Keys at scale (issue 18 aim 4) end to end over HTTPS: real node processes (LocalCluster: a
SoftHSM2 token per node, pinned mutual TLS, RFC 9421-signed admin requests), 2-of-3, 2048-bit
Paillier, ``[aux] pool = 1`` (the cluster keeps one aux-info ready; it serves up to
``keys_per_aux`` = 1000 keys, README, Protocol: "Aux-info made ahead of keys").

    python -m bench.keys_bench [--reps 15]                 # key_create_2of3_ms_2048 (make bench)
    python -m bench.keys_bench --keys 1000 [--parallel 4]  # keys_1000_create_s_2048 (make bench-keys)

- ``key_create_2of3_ms_2048``: ``POST /v1/keys`` (ECDSA) to the committed key (DKG only, with
  the pooled aux-info; commit and finalize on every node), median of ``reps`` sequential runs,
  once the pool is full (each key checked bound to the pooled aux-info on every node); with the
  CPU the three node processes spent per key (``process_cpu_seconds_total``: load-independent)
  and the coordinator's phases (the operation's ``progress.completed``, medians);
- ``key_create_own_aux_2of3_ms_2048``: the same with ``[aux] pool = 0`` (each key runs its own
  aux session, as before the pool), ``own_aux_reps`` runs, for comparison in the same run;
- ``aux_gen_2of3_s_2048``: one aux_gen job (the key-independent aux session: Paillier and
  ring-Pedersen keys, Π^mod, Π^prm, Π^fac) as node-1 timed it (``appliance_job_duration_seconds``);
- ``keys_1000_create_s_2048``: ``keys`` keys created (``parallel`` requests at a time) on one
  cluster, wall time; with the database growth per key and each node's RSS at the end, then a
  signature (request, approval, signature) with a key picked at random among them, verified.

Prime pools are seeded from the test-only prime file through the nodes' configuration, so the
aux-info figure measures the protocol, not the prime search.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import sqlite3
import statistics
import time
from pathlib import Path

from appliance.tss.ecdsa import verify_with_libsecp256k1

PRIMES = Path(__file__).resolve().parent.parent / "tests" / "data" / "test-only-primes.json"
BITS = 2048


def _fig(name: str, values: list[float], unit: str, **extra) -> dict:
    return {"name": name, "value": round(statistics.median(values), 3), "unit": unit, "runs": len(values),
            "min": round(min(values), 3), "max": round(max(values), 3), "paillier_bits": BITS, **extra}


def _bound(cluster, key_id: str) -> list[str | None]:
    out = []
    for d in cluster.data_dirs:
        con = sqlite3.connect(f"file:{d / 'node.db'}?mode=ro", uri=True, timeout=10.0)
        try:
            row = con.execute("SELECT aux_id FROM aux_bindings WHERE key_id = ?", (key_id,)).fetchone()
        finally:
            con.close()
        out.append(row[0] if row else None)
    return out


def _db_bytes(cluster) -> list[int]:
    return [sum(p.stat().st_size for p in d.glob("node.db*")) for d in cluster.data_dirs]


def _rss_mb(cluster) -> list[float]:
    out = []
    for p in cluster.procs:
        status = Path(f"/proc/{p.pid}/status").read_text()
        kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        out.append(round(kb / 1024, 1))
    return out


def _metric(text: str, name: str, labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name) and labels in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def _cpu_s(cluster) -> float:
    """CPU seconds the node processes used so far (their ``process_cpu_seconds_total``)."""
    return sum([_metric(await cluster.metrics(i), "process_cpu_seconds_total", "") for i in range(cluster.n)])


async def _pool_full(cluster, timeout: float = 300.0) -> float:
    """Wait until node-1 reports room in the aux-info pool; the aux_gen job's duration."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = await cluster.metrics(0)
        if _metric(text, "appliance_aux_pool_key_room", "") > 0:
            return _metric(text, "appliance_job_duration_seconds_sum", 'kind="aux_gen"')
        await asyncio.sleep(0.5)
    raise AssertionError("the aux-info pool did not fill")


def _cluster(pool: int = 1):
    from appliance.testing import LocalCluster

    return LocalCluster(3, 2, paillier_bits=BITS, prime_file=PRIMES, presign_pool=0, round_timeout=60,
                        job_timeout=300, log_level="warning", startup_timeout=120,
                        node_extra={i: {"aux": {"pool": pool}} for i in range(3)})


async def _own_aux(reps: int) -> list[dict]:
    """The same, without the pool: every key runs its own aux session (the path before)."""
    async with _cluster(pool=0) as cluster:
        admin = cluster.client("admin", 0)
        lat = []
        cpu0 = await _cpu_s(cluster)
        for _ in range(reps):
            t0 = time.perf_counter()
            key = await admin.create_key(2, timeout=300)
            lat.append((time.perf_counter() - t0) * 1000)
            if _bound(cluster, key["key_id"]) != [None] * cluster.n:
                raise AssertionError("a key bound to a pooled aux-info with the pool off")
        cpu_ms = (await _cpu_s(cluster) - cpu0) / reps * 1000
        return [_fig("key_create_own_aux_2of3_ms_2048", lat, "ms", cpu_ms_per_key_all_nodes=round(cpu_ms, 1),
                     detail="as key_create_2of3_ms_2048 with [aux] pool = 0: DKG + the key's own aux session")]


async def _create(reps: int) -> list[dict]:
    async with _cluster() as cluster:
        aux_s = await _pool_full(cluster)
        admin = cluster.client("admin", 0)
        lat = []
        phases: dict[str, list[float]] = {}
        cpu0 = await _cpu_s(cluster)
        for _ in range(reps):
            t0 = time.perf_counter()
            key = await admin.create_key(2, timeout=300)
            lat.append((time.perf_counter() - t0) * 1000)
            op = await admin.operation(key["operation_id"])
            for c in (op.get("progress") or {}).get("completed", []):
                phases.setdefault(c["phase"], []).append(c["ms"])
            bound = _bound(cluster, key["key_id"])
            if None in bound or len(set(bound)) != 1:
                raise AssertionError(f"key {key['key_id']} is not bound to one pooled aux-info: {bound}")
        cpu_ms = (await _cpu_s(cluster) - cpu0) / reps * 1000
        return [_fig("key_create_2of3_ms_2048", lat, "ms", cpu_ms_per_key_all_nodes=round(cpu_ms, 1),
                     phases_median_ms={k: round(statistics.median(v), 1) for k, v in phases.items()},
                     detail="POST /v1/keys to the committed key over HTTPS, 3 node processes, DKG only "
                            "(pooled aux-info), sequential, pool full"),
                {"name": "aux_gen_2of3_s_2048", "value": round(aux_s, 3), "unit": "s", "runs": 1,
                 "paillier_bits": BITS, "detail": "one aux_gen job (key-independent aux session) as node-1 "
                                                  "timed it, in the background after start"}]


async def _many(keys: int, parallel: int) -> list[dict]:
    async with _cluster() as cluster:
        await _pool_full(cluster)
        admin = cluster.client("admin", 0)
        before = _db_bytes(cluster)
        made: list[dict] = []
        sem = asyncio.Semaphore(parallel)

        async def one() -> None:
            async with sem:
                made.append(await admin.create_key(2, timeout=600))

        cpu0 = await _cpu_s(cluster)
        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(keys)))
        took = time.perf_counter() - t0
        cpu_ms = (await _cpu_s(cluster) - cpu0) / keys * 1000
        for d in cluster.data_dirs:  # the WAL folded in, so the file sizes are the data's
            con = sqlite3.connect(d / "node.db", timeout=30.0)
            try:
                con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                con.close()
        after = _db_bytes(cluster)
        rss = _rss_mb(cluster)
        key = random.choice(made)
        digest = hashlib.sha256(b"one of %d keys" % keys).digest()
        ini = cluster.client("initiator", 0)
        t1 = time.perf_counter()
        done = await ini.sign(key["key_id"], digest, timeout=300, approver=cluster.client("approver", 0))
        sign_ms = (time.perf_counter() - t1) * 1000
        if not verify_with_libsecp256k1(bytes.fromhex(key["public_key"]), digest,
                                        bytes.fromhex(done["signature"]["der"])):
            raise AssertionError("the signature of a random key does not verify")
        per_key = [round((a - b) / keys) for a, b in zip(after, before)]
        return [{"name": f"keys_{keys}_create_s_2048", "value": round(took, 1), "unit": "s", "keys": keys,
                 "parallel": parallel, "paillier_bits": BITS,
                 "db_bytes_per_key": per_key, "node_rss_mb": rss, "cpu_ms_per_key_all_nodes": round(cpu_ms, 1),
                 "detail": f"{keys} ECDSA keys created over HTTPS ({parallel} requests at a time) on one 2-of-3 "
                           "cluster from pooled aux-info; database growth per key and RSS per node after"},
                {"name": f"keys_{keys}_sign_random_ms_2048", "value": round(sign_ms, 1), "unit": "ms",
                 "paillier_bits": BITS, "detail": "request, approval, signature with a key picked at random "
                                                  "among them (no presignature pool), verified"}]


def run(reps: int = 15, own_aux_reps: int = 3) -> list[dict]:
    """``make bench``: the pooled figures, then the same without the pool (``own_aux_reps``
    keys: each takes 2 safe primes per node of the test-only file)."""
    return asyncio.run(_create(reps)) + (asyncio.run(_own_aux(own_aux_reps)) if own_aux_reps else [])


def run_many(keys: int = 1000, parallel: int = 4) -> list[dict]:
    return asyncio.run(_many(keys, parallel))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--keys", type=int, default=0, help="create this many keys (keys_<n>_create_s_2048)")
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--own-aux-reps", type=int, default=3, help="keys made without the pool, to compare")
    ap.add_argument("--merge", action="store_true", help="merge the figures into bench/results.json")
    args = ap.parse_args()
    figures = run_many(args.keys, args.parallel) if args.keys else run(args.reps, args.own_aux_reps)
    if args.merge:
        from bench.run import RESULTS, merge

        RESULTS.write_text(json.dumps(merge(RESULTS, figures), indent=1))
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
