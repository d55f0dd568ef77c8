"""Paged listings over a node database of many sign requests: the time of one page (first,
deep by cursor, filtered), median of 50 reads. Run: python -m bench.paging_bench [N]."""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from appliance.storage import NodeStore

KEYS = ["key_" + c * 24 for c in "abcd"]


def main(n: int = 100_000) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as d:
        t = [1_700_000_000.0]
        store = NodeStore(Path(d) / "node.db", clock=lambda: t[0])
        for k in KEYS:
            store.core.put_key(k, threshold=2, participants=[0, 1, 2], public_key=b"\x02" + b"\x11" * 32,
                               chain_code=b"\x00" * 32)
            store.key_status.add(k, "active", 2048)
        rows = [(f"req_{i:032x}", KEYS[i % 4], f"user{i % 10}", b"\x11" * 32, "m",
                 ["signed", "pending", "rejected", "failed"][i % 4], t[0] + i * 0.5, t[0] + i * 0.5)
                for i in range(n)]
        with store.database.tx() as db:
            db.executemany("INSERT INTO sign_requests (request_id, key_id, initiator, digest, derivation_path, "
                           "status, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?)", rows)
        mid = (rows[n // 2][6], rows[n // 2][0])
        cases = {
            "first_page_100": lambda: store.page_sign_requests(None, None, None, None, None, None, 101),
            "page_at_half_by_cursor": lambda: store.page_sign_requests(None, None, None, None, None, mid, 101),
            "key_and_status_page": lambda: store.page_sign_requests(("pending",), KEYS[1], None, None, None,
                                                                    None, 101),
            "initiator_page": lambda: store.page_sign_requests(None, None, "user3", None, None, mid, 101),
        }
        out = {}
        for name, fn in cases.items():
            times = []
            for _ in range(50):
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) * 1000)
            out[name] = statistics.median(times)
        store.close()
    return out


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    for name, ms in main(n).items():
        print(f"{name}: {ms:.2f} ms (median of 50, {n} requests)")
