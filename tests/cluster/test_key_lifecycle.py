"""Issue 15 item 4 over real node processes (2-of-3, SoftHSM2 tokens, HTTPS): disable -> every
node refuses a sign request with 409 key_disabled -> enable -> it signs -> delete under the
key-change quorum -> every node's database holds no sealed share or presignature of the key,
the key is listed as deleted with its versions' dates, and every audit log has the entries."""

from __future__ import annotations

import sqlite3

import pytest

from api.client import ApplianceAPIError
from tests.cluster_fixtures import cluster_fixture, cluster_marks, digest_of
from tests.lifecycle_helpers import eventually, presignatures, sign

pytestmark = cluster_marks("key-lifecycle")

cluster = cluster_fixture(presign_pool=1, node_extra={i: {"node": {"lifecycle_interval_s": 0.5}} for i in range(3)})


def _db_rows(cluster, i: int, key_id: str) -> tuple[int, int]:
    """(sealed secrets, presignatures still holding sealed data) of the key in node i's DB file."""
    con = sqlite3.connect(cluster.data_dirs[i] / "node.db")
    try:
        secrets = con.execute("SELECT count(*) FROM key_secrets WHERE key_id=?", (key_id,)).fetchone()[0]
        presigs = con.execute("SELECT count(*) FROM presignatures WHERE key_id=? AND sealed IS NOT NULL",
                              (key_id,)).fetchone()[0]
        return secrets, presigs
    finally:
        con.close()


async def test_disable_enable_delete_on_every_node(cluster):
    admin = cluster.client("admin")
    key = await admin.create_key(threshold=2)
    key_id = key["key_id"]

    op = await admin.disable_key(key_id)
    assert op["status"] == "done" and op["result"]["status"] == "disabled"
    for i in range(3):
        assert (await cluster.client("auditor", node=i).get_key(key_id))["status"] == "disabled"
        with pytest.raises(ApplianceAPIError) as ei:
            await cluster.client("initiator", node=i).request_signature(key_id, digest_of(f"disabled {i}"))
        assert (ei.value.status, ei.value.code) == (409, "key_disabled")
        assert ei.value.message == "the key is disabled (enable it to sign)"
    with pytest.raises(ApplianceAPIError) as ei:
        await admin.disable_key(key_id)
    assert (ei.value.status, ei.value.code) == (409, "key_disabled")

    await admin.enable_key(key_id)
    await sign(cluster, key, "enabled again")
    # presignatures exist before the delete (the pool refills for the enabled key)
    await eventually(lambda: all(any(s != "spent" for _, s, _ in presignatures(cluster, i, key_id))
                                 for i in range(3)), timeout=90, what="presignatures of the key")

    op = await admin.delete_key(key_id)
    assert op["result"]["status"] == "deleted" and op["result"]["finalized"] is True
    for i in range(3):
        assert _db_rows(cluster, i, key_id) == (0, 0)
        await eventually(lambda i=i: all(d == 1 for _, _, d in presignatures(cluster, i, key_id)),
                         what="the presignatures' HSM keys destroyed")
        view = await cluster.client("auditor", node=i).get_key(key_id)
        assert view["status"] == "deleted"
        versions = await cluster.client("auditor", node=i).key_versions(key_id)
        [v0] = versions["versions"]
        assert v0["epoch"] == 0 and v0["created"] <= v0["committed"] <= v0["destroyed"]
        with pytest.raises(ApplianceAPIError) as ei:
            await cluster.client("initiator", node=i).request_signature(key_id, digest_of(f"deleted {i}"))
        assert (ei.value.status, ei.value.code) == (410, "key_deleted")
        actions = {e["action"] for e in await cluster.client("auditor", node=i).audit() if e.get("key") == key_id}
        assert {"key_disabled", "key_enabled", "delete_prepared", "delete_commit", "key_finalized"} <= actions, actions
    assert key_id not in {k["key_id"] for k in await admin.list_keys()}
