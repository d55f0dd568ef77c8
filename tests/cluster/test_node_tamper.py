"""Peer messages altered or replayed in transit are dropped and nobody is blamed.

node-3 runs with the test-only fault plan ``tamper = ["alter", "replay"]`` (appliance/faults.py):
before each genuine protocol frame it sends a copy with one payload bit flipped (its identity
signature no longer matches) and, for direct messages, a copy whose encrypted envelope is
corrupted; after it, the same frame again; and frames of its earlier jobs into the current
one (another session). Everything must still succeed, the receivers must have dropped those
frames, and no job may fail or name a culprit."""

from __future__ import annotations

import re

from tests.cluster_fixtures import check_signature, cluster_fixture, cluster_marks, digest_of

pytestmark = cluster_marks("node-tamper")

cluster = cluster_fixture(faults={2: {"tamper": ["alter", "replay"]}})


def _dropped(metrics_text: str) -> float:
    return sum(float(v) for v in re.findall(r"^appliance_peer_messages_dropped_total\{[^}]*\} (\S+)$",
                                           metrics_text, re.M))


async def test_altered_and_replayed_messages_are_dropped_without_blame(cluster):
    admin = cluster.client("admin", node=0)
    key = await admin.create_key(threshold=2)  # node-3's broadcasts and encrypted shares are tampered with
    for i, via in ((0, 0), (1, 2), (2, 0)):
        c = cluster.client("initiator", node=via)
        digest = digest_of(f"tamper {i}")
        done = await c.sign(key["key_id"], digest, signers=["node-1", "node-3"], timeout=60,
                            approver=cluster.client("approver", node=via))
        assert "error" not in done
        check_signature(key["public_key"], digest, done["signature"])
    dropped = [_dropped(await cluster.client("auditor", node=i).metrics()) for i in range(3)]
    assert dropped[0] > 0 and dropped[1] > 0, dropped  # node-1 and node-2 dropped node-3's copies
    for i in range(3):
        m = await cluster.client("auditor", node=i).metrics()
        assert not re.search(r'^appliance_jobs_total\{kind="[a-z]+",outcome="failed"\} [1-9]', m, re.M), m
        entries = await cluster.client("auditor", node=i).audit()
        assert not [e for e in entries if e["decision"] in ("failed", "cancelled")]
