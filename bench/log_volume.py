"""Log volume of a short session (api/README.md, Logs): a 2-of-3 LocalCluster (2048-bit, the
test-only primes), one keygen and one approved signature at ``-v``; prints each node's lines,
bytes and the events it wrote. ``PYTHONPATH=. python bench/log_volume.py [DIR]`` (DIR kept)."""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import sys
import tempfile

from appliance.testing import LocalCluster
from tests.cluster_fixtures import TEST_ONLY_PRIMES


async def main(base: str) -> None:
    async with LocalCluster(nodes=3, threshold=2, paillier_bits=2048, prime_file=TEST_ONLY_PRIMES,
                            base_dir=base, keep=True) as c:
        key = await c.client("admin").create_key(threshold=2)
        req = await c.client("initiator").request_signature(key["key_id"], hashlib.sha256(b"m").digest())
        await c.client("approver").approve(req["request_id"])
        await c.client("initiator").wait_signature(req["request_id"], timeout=120)
        dirs = c.data_dirs
    for d in dirs:
        lines = (d / "node.log").read_text().splitlines()
        events = collections.Counter(json.loads(ln)["event"] if ln.startswith("{") else "(not JSON)"
                                     for ln in lines)
        print(d.name, len(lines), "lines", sum(len(ln) + 1 for ln in lines), "bytes", dict(events.most_common(6)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="log-volume-")))
