"""Key lifecycle on a real NodeStore (SQLite file; blobs in the sealed format): a delete is
prepared (deleting), abandoned (back to the status it had) or committed (every sealed share and
presignature of the key gone, the row kept as deleted); versions keep their dates."""

from __future__ import annotations

import pytest

from appliance.storage import NodeStore
from appliance.tss.group import G
from tests.node.test_store import fake_sealed


@pytest.fixture
def store(tmp_path):
    s = NodeStore(tmp_path / "node.db", clock=iter(range(1000, 10**6)).__next__)
    s.put_pending_key("key_1", b"\x02" + b"\x11" * 32, 2, [1, 2, 3], 0, 2048, fake_sealed(), b"\x00" * 32)
    s.prepare("key_1", "job_a", "keygen", "new", 0, 1, [1, 2, 3], 2)
    s.commit_prepared("job_a")
    s.put_pending_share("key_1", 1, fake_sealed())
    s.prepare("key_1", "job_b", "refresh", "member", 1, 1, [1, 2, 3], 2)
    s.commit_prepared("job_b")
    s.add_presignature(b"\x01" * 32, "key_1", 1, [1, 2], G.to_bytes(), fake_sealed())
    yield s
    s.close()


def _counts(store) -> tuple[int, int]:
    db = store.database
    return (db.one("SELECT count(*) FROM key_secrets WHERE key_id='key_1'")[0],
            db.one("SELECT count(*) FROM presignatures WHERE key_id='key_1' AND sealed IS NOT NULL")[0])


def test_delete_commit_destroys_every_epoch_and_presignature_and_keeps_the_row(store):
    store.set_key_status("key_1", "disabled")
    assert _counts(store) == (2, 1)
    store.prepare("key_1", "job_d", "delete", "delete", 1, 1, [1, 2, 3], 2, "disabled")
    assert store.get_key("key_1")["status"] == "deleting"
    p = store.commit_prepared("job_d")
    assert p["destroy_labels"] and _counts(store) == (0, 0)
    assert store.get_key("key_1")["status"] == "deleted"
    assert store.finalize_key("key_1", 1) == []
    v0, v1 = store.key_versions("key_1")
    assert (v0["epoch"], v1["epoch"]) == (0, 1)
    assert v0["created"] < v0["committed"] < v0["superseded"] <= v0["destroyed"]
    assert v1["created"] < v1["committed"] < v1["superseded"] <= v1["destroyed"]


def test_an_abandoned_delete_goes_back_to_the_status_it_had(store):
    store.set_key_status("key_1", "disabled")
    store.prepare("key_1", "job_d", "delete", "delete", 1, 1, [1, 2, 3], 2, "disabled")
    assert store.abandon_prepared("job_d") == []
    assert store.get_key("key_1")["status"] == "disabled" and _counts(store) == (2, 1)


def test_finalize_after_refresh_dates_the_old_version_destroyed(store):
    store.finalize_key("key_1", 1)
    v0, v1 = store.key_versions("key_1")
    assert v0["destroyed"] is not None and v1["destroyed"] is None and v1["superseded"] is None
