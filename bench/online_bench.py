"""The online path over HTTPS: signatures from a warm presignature pool under a rule that
needs no human approval, one at a time and sustained, with a per-stage breakdown read from
the nodes' metrics, and a check that no request was lost or signed twice.

    python -m bench.online_bench [--bits 2048] [--sizes 3:2,5:3]   # or run(bits) -> list[dict]

Every cluster runs the auto-approval rule (``approvals = []``, ``max_signatures`` per
``window_s``: no person approves; the rate and every other check stay) and a presignature pool
at node-1, which coordinates every request (the other nodes keep none); the bench waits until
node-1's pools hold what the run spends (the pool is *warm*: no signature of the run waits for a
presign, and node-1's refill waits while it signs). A refill cannot keep up with these rates on
2 cores (a 2-of-3 presign costs about 0.7 CPU-seconds): the sustained figure is what the
online path does from a pool filled before.

Definitions (the clock is the client's, ``time.perf_counter``):

- ``sign_presigned_auto_p50_ms`` / ``sign_presigned_p99_ms``: one signature at a time; the
  clock starts before the signed ``POST /v1/keys/{id}/sign-requests`` and stops when the
  long-poll ``GET /v1/sign-requests/{id}`` returns the signature. No approval (the rule needs
  none), warm pool, 2-of-3.
- ``sign_presigned_stage_<stage>_ms``: where that time goes, per signature, summed over the
  three nodes, from the nodes' ``appliance_sign_stage_duration_seconds``,
  ``appliance_hsm_operation_duration_seconds`` and ``appliance_protocol_round_duration_seconds``
  (sign rounds) histograms read before and after the sequential run. Stages can nest (a
  ``client_auth`` includes the commit of its nonce; a ``peer_call`` includes the peer's work):
  they say where time goes, they do not add up to the latency. ``..._stage_process_cpu_ms``:
  the node processes' CPU time (user + system, ``process_cpu_seconds_total``) per signature,
  summed over the nodes: on 2 cores, 2000 ms / that figure bounds the sustained rate.
- ``sign_presigned_commits``: SQLite commits (each an fsync: ``synchronous=FULL``) per
  signature in that run, summed over the nodes, with ``by_node_and_site`` (per node, per
  committing function) from ``appliance_sqlite_commits_total{site}``.
- ``sustained_sign_{t}of{n}_per_s``: ``burst`` signatures from ``clients`` concurrent
  clients against node-1, completed signatures over the wall time from the first request to
  the last signature; ``sustained_sign_{t}of{n}_p99_ms``: each request's latency in that run.
  After the run the bench reads every node's database: each request the clients got an id for
  is ``signed`` at node-1 with a signature that verifies, no request id twice, no
  presignature used by two requests, and every signer's ``node_used_requests`` has each request
  at most once (``sustained_sign_{t}of{n}_lost`` and ``_duplicated``, both must be 0).

Names carry ``_2048`` at 2048 bits (no suffix at 3072), as the other benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import re
import sqlite3
import statistics
import time
from pathlib import Path

from bench.e2e_bench import percentile

PRIMES = Path(__file__).resolve().parent.parent / "tests" / "data" / "test-only-primes.json"
AUTO_RULE = {"signing": {"approvals": [], "max_signatures": 1_000_000, "window_s": 3600}}
_COMMITS = re.compile(r'^appliance_sqlite_commits_total\{site="([^"]*)"\} (\S+)$', re.M)
_HIST = re.compile(r'^appliance_(sign_stage|hsm_operation|protocol_round)_duration_seconds_(sum|count)'
                   r'\{([^}]*)\} (\S+)$', re.M)


def snapshot(metrics: str) -> dict[tuple[str, str], float]:
    """{(stage name, "sum"|"count"): value} of one node's stage, HSM and sign-round histograms."""
    out: dict[tuple[str, str], float] = {}
    for family, kind, labels, value in _HIST.findall(metrics):
        if family == "protocol_round":
            if 'protocol="sign"' not in labels:
                continue
            name = "sign_round" + re.search(r'round="(\d+)"', labels).group(1)
        else:
            name = ("hsm_" if family == "hsm_operation" else "") + labels.split('"')[1]
        out[(name, kind)] = out.get((name, kind), 0.0) + float(value)
    cpu = re.search(r"^process_cpu_seconds_total (\S+)$", metrics, re.M)
    if cpu:  # the node process's CPU time (user + system), as one more "stage"
        out[("process_cpu", "sum")] = float(cpu.group(1))
        out[("process_cpu", "count")] = 1.0
    return out


def breakdown(before: list[dict], after: list[dict], signatures: int) -> dict[str, tuple[float, float]]:
    """{stage: (ms per signature, occurrences per signature)} summed over the nodes."""
    out: dict[str, list[float]] = {}
    for b, a in zip(before, after):
        for (name, kind) in a:
            if kind != "sum":
                continue
            s = a[(name, "sum")] - b.get((name, "sum"), 0.0)
            c = a.get((name, "count"), 0.0) - b.get((name, "count"), 0.0)
            if name == "process_cpu":
                c = signatures  # one CPU figure per node: per signature below
            if c:
                acc = out.setdefault(name, [0.0, 0.0])
                acc[0] += s
                acc[1] += c
    return {k: (v[0] * 1000 / signatures, v[1] / signatures) for k, v in sorted(out.items())}


def commits(metrics: str) -> dict[str, float]:
    """{site: commits so far} of one node (``appliance_sqlite_commits_total``)."""
    return {site: float(v) for site, v in _COMMITS.findall(metrics)}


def commits_per_signature(before: list[dict], after: list[dict], signatures: int) -> dict[str, dict[str, float]]:
    """{node-N: {site: commits per signature}} (sites that did not commit left out)."""
    out: dict[str, dict[str, float]] = {}
    for i, (b, a) in enumerate(zip(before, after)):
        d = {site: (v - b.get(site, 0.0)) / signatures for site, v in sorted(a.items())}
        out[f"node-{i + 1}"] = {site: round(v, 2) for site, v in d.items() if v}
    return out


def _presign_jobs(metrics: str) -> int:
    return int(sum(float(v) for v in re.findall(
        r'^appliance_job_duration_seconds_count\{kind="presign",parties="\d+"\} (\S+)$', metrics, re.M)))


def _digest(*parts) -> bytes:
    return hashlib.sha256(("online bench " + " ".join(map(str, parts)) + str(time.time_ns())).encode()).digest()


async def _wait_pool(admin, key: dict, want: int, timeout: float = 900.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        k = await admin.get_key(key["key_id"])
        have = sum(v for s, v in k.get("presignatures", {}).items() if s.startswith("node-1,"))
        if have >= want:
            return k["presignatures"]
        if time.monotonic() > deadline:
            raise TimeoutError(f"presignature pool not filled: {k['presignatures']}")
        await asyncio.sleep(0.5)


def audit_databases(data_dirs: list[Path], key_id: str, request_ids: list[str]) -> tuple[int, int]:
    """(lost, duplicated) over the run's ``request_ids``, read from the node databases."""
    want = set(request_ids)
    lost = len(request_ids) - len(want)  # an id handed out twice: one of them is lost
    dup = 0
    with sqlite3.connect(f"file:{data_dirs[0] / 'node.db'}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT request_id, status, result, presig_id FROM sign_requests WHERE key_id = ?",
                          (key_id,)).fetchall()
    by_id = {r[0]: r for r in rows}
    lost += sum(1 for rid in want if rid not in by_id or by_id[rid][1] != "signed" or not by_id[rid][2])
    presigs = [r[3] for r in rows if r[0] in want and r[3] is not None]
    dup += len(presigs) - len(set(presigs))
    for d in data_dirs:
        with sqlite3.connect(f"file:{d / 'node.db'}?mode=ro", uri=True) as db:
            used = [r[0] for r in db.execute("SELECT request_id FROM node_used_requests WHERE key_id = ?",
                                             (key_id,))]
        dup += len(used) - len(set(used))
    return lost, dup


async def _online(n: int, t: int, bits: int, *, seq: int, burst: int, clients: int) -> list[dict]:
    from appliance.testing import LocalCluster
    from tests.cluster_fixtures import check_signature

    sfx = "" if bits == 3072 else f"_{bits}"
    tag = f"{t}of{n}"
    out: list[dict] = []
    # node-1 coordinates every request and fills one pool per signer set it leads (those with
    # it in): together they hold the run; the other nodes keep no pool (as bench/e2e_bench.py)
    pool = -(-max(seq, burst) // math.comb(n - 1, t - 1)) + 2
    async with LocalCluster(n, t, paillier_bits=bits, prime_file=PRIMES, presign_pool=0, round_timeout=120,
                            job_timeout=900, log_level="warning", startup_timeout=120, policy=AUTO_RULE,
                            node_extra={0: {"node": {"presign_pool": pool}}}) as cluster:
        admin = cluster.client("admin", 0)
        key = await admin.create_key(t, timeout=1800)
        ini = cluster.client("initiator", 0)
        if seq:
            await _wait_pool(admin, key, seq)
            texts = [await cluster.metrics(i) for i in range(n)]
            before, c_before = [snapshot(m) for m in texts], [commits(m) for m in texts]
            lat = []
            for i in range(seq):
                d = _digest(tag, "seq", i)
                t0 = time.perf_counter()
                req = await ini.request_signature(key["key_id"], d)
                done = await ini.wait_signature(req["request_id"], timeout=60)
                lat.append((time.perf_counter() - t0) * 1000)
                check_signature(key["public_key"], d, done["signature"])
            texts = [await cluster.metrics(i) for i in range(n)]
            after, c_after = [snapshot(m) for m in texts], [commits(m) for m in texts]
            base = dict(nodes=n, threshold=t, paillier_bits=bits, samples=len(lat))
            per_site = commits_per_signature(c_before, c_after, seq)
            out.append({"name": f"sign_presigned_commits{sfx}",
                        "value": round(sum(sum(v.values()) for v in per_site.values()), 2),
                        "unit": "commits", **base, "by_node_and_site": per_site,
                        "detail": "SQLite commits (each fsynced) per signature, summed over the nodes, "
                        "from appliance_sqlite_commits_total{site}"})
            out.append({"name": f"sign_presigned_auto_p50_ms{sfx}", "value": round(statistics.median(lat), 1),
                        "unit": "ms", **base, "detail": "one at a time, no approval (auto rule), warm pool, "
                        "client POST to signature"})
            out.append({"name": f"sign_presigned_p99_ms{sfx}", "value": round(percentile(lat, 0.99), 1), "unit": "ms",
                        **base, "detail": "as sign_presigned_auto_p50_ms"})
            for stage, (ms, per) in breakdown(before, after, seq).items():
                out.append({"name": f"sign_presigned_stage_{stage}_ms{sfx}", "value": round(ms, 2), "unit": "ms",
                            "per_signature": round(per, 2), **base,
                            "detail": "per signature, summed over the nodes (stages nest)"})
        if not burst:  # --burst 0: the sequential run alone
            return out
        await _wait_pool(admin, key, burst)
        inis = [cluster.client("initiator", 0) for _ in range(clients)]
        todo = list(range(burst))
        lat, ids = [], []

        async def worker(c: int) -> None:
            while todo:
                i = todo.pop()
                d = _digest(tag, "burst", i)
                t0 = time.perf_counter()
                req = await inis[c].request_signature(key["key_id"], d)
                ids.append(req["request_id"])
                done = await inis[c].wait_signature(req["request_id"], timeout=300)
                lat.append((time.perf_counter() - t0) * 1000)
                check_signature(key["public_key"], d, done["signature"])

        before = [snapshot(await cluster.metrics(i)) for i in range(n)]
        jobs0 = _presign_jobs(await cluster.metrics(0))
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in range(clients)))
        wall = time.perf_counter() - t0
        after = [snapshot(await cluster.metrics(i)) for i in range(n)]
        refills = _presign_jobs(await cluster.metrics(0)) - jobs0
        lost, dup = audit_databases(cluster.data_dirs, key["key_id"], ids)
        base = dict(nodes=n, threshold=t, paillier_bits=bits, samples=burst, clients=clients)
        out.append({"name": f"sustained_sign_{tag}_per_s{sfx}", "value": round(len(lat) / wall, 2), "unit": "1/s",
                    **base, "detail": f"{burst} signatures, {clients} concurrent clients, auto rule, warm pool"})
        out.append({"name": f"sustained_sign_{tag}_p99_ms{sfx}", "value": round(percentile(lat, 0.99), 1), "unit": "ms", **base})
        out.append({"name": f"sustained_sign_{tag}_p50_ms{sfx}", "value": round(statistics.median(lat), 1),
                    "unit": "ms", **base})
        out.append({"name": f"sustained_sign_{tag}_lost{sfx}", "value": lost, "unit": "requests", **base})
        out.append({"name": f"sustained_sign_{tag}_refill_jobs{sfx}", "value": refills, "unit": "jobs", **base,
                    "detail": "presign jobs node-1 coordinated during the run"})
        for stage, (ms, per) in breakdown(before, after, burst).items():
            out.append({"name": f"sustained_sign_{tag}_stage_{stage}_ms{sfx}", "value": round(ms, 2), "unit": "ms",
                        "per_signature": round(per, 2), **base,
                        "detail": "per signature, summed over the nodes (stages nest; refills included)"})
        out.append({"name": f"sustained_sign_{tag}_duplicated{sfx}", "value": dup, "unit": "requests", **base})
    return out


def run(paillier_bits: int = 2048, sizes=((3, 2), (5, 3)), *, seq: int = 40, burst: int = 60,
        clients: int = 8) -> list[dict]:
    out: list[dict] = []
    for n, t in sizes:  # the sequential latency and its breakdown: 2-of-3 only
        out += asyncio.run(_online(n, t, paillier_bits, seq=seq if (n, t) == (3, 2) else 0, burst=burst,
                                   clients=clients))
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--bits", type=int, default=2048)
    ap.add_argument("--sizes", default="3:2,5:3")
    ap.add_argument("--seq", type=int, default=40)
    ap.add_argument("--burst", type=int, default=60)
    ap.add_argument("--clients", type=int, default=8)
    a = ap.parse_args()
    sizes = tuple(tuple(int(x) for x in s.split(":")) for s in a.sizes.split(","))
    print(json.dumps(run(a.bits, sizes, seq=a.seq, burst=a.burst, clients=a.clients), indent=1))
