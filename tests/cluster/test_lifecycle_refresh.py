"""Issue 8 over real node processes (2-of-3, SoftHSM2 tokens, HTTPS): presignature pools,
proactive refresh in two phases (commit, then finalize once every node confirmed), a refresh
that fails half way, a commit a node missed, and an old-epoch share that cannot take part."""

from __future__ import annotations

import asyncio

import pytest

from api.client import ApplianceAPIError
from tests.cluster_fixtures import cluster_fixture, cluster_marks
from tests.lifecycle_helpers import (
    eventually,
    presig_metric,
    presignatures,
    restart_with,
    secret_epochs,
    sign,
    snapshot,
    swap_state,
)

pytestmark = cluster_marks("lifecycle-refresh")

POOL = 2
cluster = cluster_fixture(presign_pool=POOL, node_extra={i: {"node": {"lifecycle_interval_s": 0.5}}
                                                         for i in range(3)})
STATE: dict = {}


async def _key(cluster) -> dict:
    if "key" not in STATE:
        STATE["key"] = await cluster.client("admin").create_key(threshold=2)
    return STATE["key"]


async def _epochs(cluster, key) -> list[int]:
    return [(await cluster.client("auditor", node=i).get_key(key["key_id"]))["epoch"] for i in range(3)]


async def test_presignature_pool_fills_is_used_and_refills(cluster):
    key = await _key(cluster)
    full = 2 * POOL  # each node is in two signer sets of a 2-of-3 key
    await eventually(lambda: _all_full(cluster, full), timeout=120, what="presignature pools to fill")
    samples: list[float] = []
    stop = asyncio.Event()

    async def sample() -> None:
        while not stop.is_set():
            samples.append(await presig_metric(cluster, 0))
            await asyncio.sleep(0.03)

    sampler = asyncio.create_task(sample())
    try:
        done = await sign(cluster, key, "from the pool", signers=["node-1", "node-2"])
        assert done.get("presignature"), "a full pool, yet the signature did not use a stored presignature"
        await eventually(lambda: _metric_is(cluster, 0, full), timeout=60, what="the pool to refill")
    finally:
        stop.set()
        await sampler
    # the sampler's last read may have been answered before the refill that `eventually` saw
    # (two requests in flight at once): one more read, after both, is the pool as it stands
    samples.append(await presig_metric(cluster, 0))
    assert min(samples) < full and samples[-1] == full, samples
    # the spent presignature is gone on both signers: spent, its HSM key destroyed
    for i in (0, 1):
        await eventually(lambda i=i: all(d == 1 for (_, st, d) in presignatures(cluster, i, key["key_id"])
                                         if st == "spent"), what="spent presignature keys destroyed")
    # a burst larger than the pool: the ones beyond it fall back to full signing
    burst = await asyncio.gather(*(sign(cluster, key, f"burst {k}", signers=["node-1", "node-3"])
                                   for k in range(POOL + 1)))
    used = [bool(d.get("presignature")) for d in burst]
    assert used.count(False) >= 1 and used.count(True) >= 1, used


async def _all_full(cluster, full) -> bool:
    return all([await presig_metric(cluster, i) >= full for i in range(3)])


async def _metric_is(cluster, i, value) -> bool:
    return await presig_metric(cluster, i) == value


async def test_refresh_keeps_the_key_and_destroys_the_old_epoch(cluster, tmp_path):
    key = await _key(cluster)
    before = await sign(cluster, key, "before refresh")
    e = (await _epochs(cluster, key))[0]
    # node-3's whole state at the old epoch, kept aside to show that it cannot take part later
    old_state = tmp_path / "node-3-old"
    await snapshot(cluster, 2, old_state)
    op = await cluster.client("admin", node=1).refresh(key["key_id"], timeout=120)
    res = op["result"]
    assert res["public_key"] == key["public_key"] and res["epoch"] == e + 1
    assert res["finalized"] is True and res["unconfirmed_nodes"] == []
    assert await _epochs(cluster, key) == [e + 1] * 3
    for i in range(3):
        assert secret_epochs(cluster, i, key["key_id"]) == {e + 1}, f"node {i} kept an old sealed share"
        await eventually(lambda i=i: all(st == "spent" and d == 1 for (ep, st, d) in
                                         presignatures(cluster, i, key["key_id"]) if ep <= e),
                         what="old-epoch presignatures destroyed")
    after = await sign(cluster, key, "after refresh", node=2, signers=["node-2", "node-3"])
    assert after["signature"]["der"] != before["signature"]["der"]
    # the old epoch's share (node-3 restored from its copy) cannot take part any more
    await swap_state(cluster, 2, old_state)
    try:
        assert (await cluster.client("auditor", node=2).get_key(key["key_id"]))["epoch"] == e
        for via, signers in ((0, ["node-1", "node-3"]), (2, ["node-2", "node-3"])):
            with pytest.raises(ApplianceAPIError) as ei:
                await sign(cluster, key, f"old epoch via {via}", node=via, signers=signers, timeout=60)
            assert ei.value.code == "epoch_mismatch", ei.value
    finally:
        await swap_state(cluster, 2, old_state)
    await sign(cluster, key, "node-3 at the new epoch", signers=["node-1", "node-3"])


async def test_a_refresh_that_fails_half_way_leaves_the_old_epoch_usable(cluster):
    key = await _key(cluster)
    e = (await _epochs(cluster, key))[0]
    # node-3 dies right after sealing its new share, before it reports (a power cut)
    await restart_with(cluster, 2, crash_points=["refresh:prepared"])
    with pytest.raises(ApplianceAPIError) as ei:
        await cluster.client("admin", node=0).refresh(key["key_id"], timeout=120)
    assert ei.value.code in ("quorum_unreachable", "round_timeout", "job_timeout"), ei.value
    assert "node-3" in (ei.value.missing_nodes or []), ei.value
    assert not cluster.running(2)
    # the others still sign at the old epoch; their pending share of e+1 is gone
    for i in (0, 1):
        assert (await cluster.client("auditor", node=i).get_key(key["key_id"]))["epoch"] == e
        await eventually(lambda i=i: secret_epochs(cluster, i, key["key_id"]) == {e}, what="pending share dropped")
    await sign(cluster, key, "old epoch still works", signers=["node-1", "node-2"])
    # node-3 comes back with a prepared share: the coordinator never committed, so it is dropped
    cluster.configure_faults(2)
    await cluster.start_node(2)
    await eventually(lambda: secret_epochs(cluster, 2, key["key_id"]) == {e}, what="node-3 drops its prepared share")
    assert await _epochs(cluster, key) == [e] * 3
    await sign(cluster, key, "node-3 back at the old epoch", node=2, signers=["node-1", "node-3"])


async def test_old_shares_stay_until_every_node_confirmed_the_new_epoch(cluster):
    key = await _key(cluster)
    e = (await _epochs(cluster, key))[0]
    # node-3 prepares, but dies when the commit reaches it
    await restart_with(cluster, 2, crash_points=["commit"])
    op = await cluster.client("admin", node=0).refresh(key["key_id"], timeout=120)
    res = op["result"]
    assert res["epoch"] == e + 1 and res["finalized"] is False and res["unconfirmed_nodes"] == ["node-3"]
    assert not cluster.running(2)
    # nodes 1 and 2 use the new epoch but keep their old share while node-3 has not confirmed
    for i in (0, 1):
        assert (await cluster.client("auditor", node=i).get_key(key["key_id"]))["epoch"] == e + 1
        assert secret_epochs(cluster, i, key["key_id"]) == {e, e + 1}
    await sign(cluster, key, "new epoch, node-3 away", signers=["node-1", "node-2"])
    # node-3 restarts, learns the coordinator's decision, commits; then everyone finalizes
    cluster.configure_faults(2)
    await cluster.start_node(2)
    for i in range(3):
        await eventually(lambda i=i: secret_epochs(cluster, i, key["key_id"]) == {e + 1}, timeout=60,
                         what=f"node {i} to finalize epoch {e + 1}")
    assert await _epochs(cluster, key) == [e + 1] * 3
    await sign(cluster, key, "node-3 caught up", node=2, signers=["node-2", "node-3"])
