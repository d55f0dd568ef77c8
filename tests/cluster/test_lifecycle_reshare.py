"""Issue 8 over real node processes: resharing 2-of-3 to 3-of-4 and to 2-of-2 with a new member
(a spare node outside the key), removed nodes unable to take part, and the disaster-recovery
scenario: a node loses its token and database, is re-made with ``appliance init`` under the
same id, and the remaining holders reshare to it; the public key never changes."""

from __future__ import annotations

import pytest

from api.client import ApplianceAPIError
from tests.cluster_fixtures import cluster_fixture, cluster_marks, digest_of
from tests.lifecycle_helpers import eventually, secret_epochs, sign

pytestmark = cluster_marks("lifecycle-reshare")

# four nodes; keys are made on the first three (node-4 is a spare until a reshare adds it)
cluster = cluster_fixture(nodes=4, node_extra={i: {"node": {"lifecycle_interval_s": 0.5}} for i in range(4)})
THREE = ["node-1", "node-2", "node-3"]


async def _new_key(cluster) -> dict:
    key = await cluster.client("admin").create_key(threshold=2, nodes=THREE)
    assert key["nodes"] == THREE
    return key


async def _view(cluster, i: int, key: dict) -> dict:
    return await cluster.client("auditor", node=i).get_key(key["key_id"])


async def test_reshare_2_of_3_to_3_of_4(cluster):
    key = await _new_key(cluster)
    with pytest.raises(ApplianceAPIError) as ei:  # the spare does not hold it yet
        await _view(cluster, 3, key)
    assert ei.value.status == 404
    await sign(cluster, key, "2-of-3 before")
    op = await cluster.client("admin", node=1).reshare(key["key_id"], 3, THREE + ["node-4"], timeout=180)
    res = op["result"]
    assert res["public_key"] == key["public_key"] and res["nodes"] == THREE + ["node-4"]
    assert res["threshold"] == 3 and res["epoch"] == 1 and res["finalized"] is True
    for i in range(4):
        v = await _view(cluster, i, key)
        assert (v["public_key"], v["threshold"], v["epoch"], v["nodes"]) == \
            (key["public_key"], 3, 1, THREE + ["node-4"])
        assert secret_epochs(cluster, i, key["key_id"]) == {1}
    await sign(cluster, key, "3-of-4 with the newcomer", node=3, signers=["node-2", "node-3", "node-4"])
    await sign(cluster, key, "3-of-4 old members", signers=["node-1", "node-2", "node-3"])
    with pytest.raises(ApplianceAPIError) as ei:  # two are no longer enough
        await sign(cluster, key, "only two", signers=["node-1", "node-4"])
    assert (ei.value.status, ei.value.code) == (400, "bad_signers")


async def test_reshare_2_of_3_to_2_of_2_with_a_new_member(cluster):
    key = await _new_key(cluster)
    op = await cluster.client("admin", node=0).reshare(key["key_id"], 2, ["node-1", "node-4"], timeout=180)
    res = op["result"]
    assert res["public_key"] == key["public_key"] and res["nodes"] == ["node-1", "node-4"]
    assert res["finalized"] is True
    await sign(cluster, key, "2-of-2 with the new member", node=3, signers=["node-1", "node-4"])
    # the removed nodes deleted their shares once every new member had confirmed, and cannot take part
    for i in (1, 2):
        assert secret_epochs(cluster, i, key["key_id"]) == set()
        with pytest.raises(ApplianceAPIError) as ei:
            await _view(cluster, i, key)
        assert ei.value.status == 404
        with pytest.raises(ApplianceAPIError) as ei:  # nor coordinate for it
            await cluster.client("initiator", node=i).request_signature(key["key_id"], digest_of("removed"))
        assert ei.value.status == 404
    with pytest.raises(ApplianceAPIError) as ei:
        await sign(cluster, key, "with a removed node", signers=["node-1", "node-2"])
    assert (ei.value.status, ei.value.code) == (400, "bad_signers")
    with pytest.raises(ApplianceAPIError) as ei:  # a removed node cannot start a reshare either
        await cluster.client("admin", node=1).reshare(key["key_id"], 2, ["node-2", "node-3"])
    assert ei.value.status == 404


async def test_disaster_recovery_a_node_loses_its_token_and_database(cluster):
    key = await _new_key(cluster)
    await sign(cluster, key, "before the disaster", signers=["node-2", "node-3"])
    old_identity = (cluster.data_dirs[2] / "node-info.json").read_text()
    # node-3's machine is lost: token and database gone; a fresh node is made in its place
    info = await cluster.replace_node(2)
    assert info["identity_key"] not in old_identity
    with pytest.raises(ApplianceAPIError) as ei:
        await _view(cluster, 2, key)
    assert ei.value.status == 404
    # the remaining holders (a quorum) reshare to the same committee: node-3 is a newcomer
    op = await cluster.client("admin", node=0).reshare(key["key_id"], 2, THREE, timeout=180)
    res = op["result"]
    assert res["public_key"] == key["public_key"] and res["nodes"] == THREE and res["finalized"] is True
    for i in range(3):
        v = await _view(cluster, i, key)
        assert (v["public_key"], v["epoch"], v["nodes"]) == (key["public_key"], 1, THREE)
        await eventually(lambda i=i: secret_epochs(cluster, i, key["key_id"]) == {1}, what="old epoch destroyed")
    await sign(cluster, key, "after recovery 1+3", node=2, signers=["node-1", "node-3"])
    await sign(cluster, key, "after recovery 2+3", node=1, signers=["node-2", "node-3"])
