"""``presign_3of3_ms`` with every node process pinned to one core (taskset), and shared.

    python -m bench.presign_pinning [--presigs 4] [--bits 2048]

Three node processes (LocalCluster, HTTPS on loopback, SoftHSM2), a 3-of-3 key; node-1 is
restarted with a presignature pool of ``--presigs`` and the figure is its presign jobs' mean
duration as its metrics report it (the coordinator's job time, as ``bench/e2e_bench.py``
measures ``presign_3of3_ms``). "pinned": node i runs under ``taskset -c (i mod cores)``, so a
node sees one usable core and checks its peers' proofs one after another; "shared": every
node may use every core and checks its peers' proofs on a thread pool of that size. With
fewer cores than nodes (this project's 2-core machine) pinned nodes share cores: the figures
show a trend, not what one node per host gives.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path

from bench.e2e_bench import _hist

PRIMES = Path(__file__).resolve().parent.parent / "tests" / "data" / "test-only-primes.json"


async def measure(pinned: bool, presigs: int, bits: int) -> dict:
    from appliance.testing import LocalCluster

    cores = len(os.sched_getaffinity(0))
    launchers = [["taskset", "-c", str(i % cores)] for i in range(3)] if pinned else None
    async with LocalCluster(3, 2, paillier_bits=bits, prime_file=PRIMES, presign_pool=0, launchers=launchers,
                            round_timeout=120, job_timeout=900, log_level="warning") as cluster:
        admin = cluster.client("admin", 0)
        key = await admin.create_key(3)
        await cluster.stop_node(0)
        cluster.configure_node(0, "node", presign_pool=presigs)
        await cluster.start_node(0)
        admin = cluster.client("admin", 0)
        deadline = time.monotonic() + 1800
        while (await admin.get_key(key["key_id"]))["presignatures"].get("node-1,node-2,node-3", 0) < presigs:
            if time.monotonic() > deadline:
                raise TimeoutError("the presignature pool did not fill")
            await asyncio.sleep(0.5)
        total, count = _hist(await admin.metrics(), "presign", 3)
    suffix = "" if bits == 3072 else f"_{bits}"
    return {"name": f"presign_3of3_{'pinned' if pinned else 'shared'}_ms{suffix}",
            "value": round(total / count * 1000, 1), "unit": "ms", "samples": int(count), "cores": cores,
            "loadavg_after": [round(x, 2) for x in os.getloadavg()]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--presigs", type=int, default=4)
    ap.add_argument("--bits", type=int, default=2048)
    args = ap.parse_args()
    for pinned in (False, True):
        print(json.dumps(asyncio.run(measure(pinned, args.presigs, args.bits))), flush=True)


if __name__ == "__main__":
    main()
