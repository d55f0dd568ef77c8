"""TwoPhase in process (issue 13): a refresh's prepare -> commit -> finalize through a real
NodeStore on tmp_path, the repeated commit confirmed, the steps outside the table refused."""

from __future__ import annotations

import os
import types

import pytest

from appliance.errors import ServiceError
from appliance.keys import states
from appliance.keys.two_phase import TwoPhase
from appliance.storage import NodeStore
from appliance.tss.group import G
from tests.node.fakes import FakePorts, Users, fake_runtime

KEY = "key_" + "a" * 24
JOB = "job_" + "c" * 24
FP = "f" * 16  # the key state this node prepared (the fingerprint it reported)
COORD = 1  # node-2 coordinates; this node is node-1 (index 0)


def _sealed() -> bytes:
    """A syntactically valid sealed blob (never unsealed here)."""
    return bytes([1, 13]) + b"appliance/kek" + os.urandom(12 + 40)


class _Pool:
    def __init__(self) -> None:
        self.calls: list = []
        self.wakeup = types.SimpleNamespace(set=lambda: self.calls.append("wakeup"))

    def changed(self) -> None:
        self.calls.append("changed")

    def report(self) -> None:
        self.calls.append("report")

    async def destroy_keys(self, labels):
        self.calls.append(("destroy", labels))


class _Shares:
    def __init__(self) -> None:
        self.forgotten: list = []

    def forget(self, key_id, *, below_epoch=None) -> None:
        self.forgotten.append((key_id, below_epoch))


@pytest.fixture
def node(tmp_path):
    store = NodeStore(tmp_path / "node.db")
    store.put_pending_key(KEY, G.to_bytes(), 2, [0, 1, 2], 0, 2048, _sealed(), b"\x07" * 32)
    store.set_key_status(KEY, "active")
    store.add_presignature(b"\x01" * 16, KEY, 0, [0, 1], G.to_bytes(), _sealed())
    rt, ports = fake_runtime(Users().policy), FakePorts(store)
    rt.spawn = lambda coro: (coro.close(), rt.spawned.append(coro))  # recorded, not run
    jobs: dict = {}
    table = types.SimpleNamespace(get=jobs.get, forget=lambda job: jobs.pop(job.job_id, None),
                                  key_change_running=lambda key_id: False)
    tp = TwoPhase(rt, table, local=None, shares=_Shares(), pool=_Pool(), peers=ports.peers,
                  **ports.slots("key_store", "changes", "audit"))
    yield rt, tp, store, ports.audit
    store.close()


def _prepare_refresh(rt, tp) -> None:
    tp.key_store().put_pending_share(KEY, 1, _sealed())
    job = types.SimpleNamespace(job_id=JOB, spec={"kind": "refresh", "key_id": KEY, "epoch": 0},
                                result={"fingerprint": FP}, parties=[0, 1, 2], coordinator=COORD)
    tp.prepare(job)


def test_a_refresh_prepares_commits_and_finalizes_through_the_store(node):
    rt, tp, store, audit = node
    body = {"key_id": KEY, "epoch": 1, "fingerprint": FP}
    _prepare_refresh(rt, tp)
    p = store.pending_for_job(JOB)
    assert (p["state"], p["role"], p["new_epoch"], p["coordinator"]) == (states.PREPARED, "member", 1, COORD)
    assert store.get_key(KEY)["epoch"] == 0  # nothing in use yet
    # only the coordinator commits
    with pytest.raises(ServiceError) as ei:
        tp.commit_job(JOB, 2, body)
    assert ei.value.code == "forbidden"
    assert tp.commit_job(JOB, COORD, body) == {"committed": True, "epoch": 1}
    assert store.pending_for_job(JOB)["state"] == states.COMMITTED
    key = store.get_key(KEY)
    assert (key["epoch"], key["status"]) == (1, "active")
    assert audit.entries[-1] == {"actor": "node-2", "action": "refresh_commit", "key_id": KEY,
                                    "subject": JOB, "digest": None, "decision": "committed", "reason": "epoch 1, member"}
    assert tp.shares.forgotten == [(KEY, None)] and tp.pool.calls == ["changed"]
    # a repeated commit (a lost answer) is confirmed again and changes nothing
    assert tp.commit_job(JOB, COORD, body) == {"committed": True, "epoch": 1}
    assert len(audit.entries) == 1 and tp.pool.calls == ["changed"]
    # the old share and presignature stay until finalize, which only the coordinator sends
    assert store.count_presignatures(KEY, epoch=0) == 1
    with pytest.raises(ServiceError) as ei:
        tp.finalize_job(JOB, 0, body)
    assert ei.value.code == "forbidden"
    assert tp.finalize_job(JOB, COORD, body) == {"finalized": True}
    assert store.pending_for_job(JOB) is None
    assert store.count_presignatures(KEY, epoch=0) == 0
    assert store.core.get_sealed_secrets(KEY, 0) == {}
    assert list(store.core.get_sealed_secrets(KEY, 1)) == ["share"]
    assert [e["action"] for e in audit.entries] == ["refresh_commit", "key_finalized"]
    assert len(rt.spawned) == 1  # the spent presignature's HSM key is destroyed
    assert tp.finalize_job(JOB, COORD, body) == {"finalized": True}  # done before


def test_an_abandon_after_commit_is_refused(node):
    rt, tp, store, audit = node
    _prepare_refresh(rt, tp)
    tp.commit_job(JOB, COORD, {"key_id": KEY, "epoch": 1, "fingerprint": FP})
    with pytest.raises(states.InvalidTransition) as ei:
        tp.abandon_prepared(JOB, store.pending_for_job(JOB)["state"])
    assert (ei.value.code, ei.value.state, ei.value.event) == ("invalid_transition", "committed", "abandon")
    assert store.pending_for_job(JOB)["state"] == states.COMMITTED
    assert store.get_key(KEY)["epoch"] == 1


def test_a_second_prepare_of_the_same_job_is_refused(node):
    rt, tp, store, audit = node
    _prepare_refresh(rt, tp)
    job = types.SimpleNamespace(job_id=JOB, spec={"kind": "refresh", "key_id": KEY, "epoch": 0},
                                result={}, parties=[0, 1, 2], coordinator=COORD)
    with pytest.raises(states.InvalidTransition) as ei:
        tp.prepare(job)
    assert (ei.value.state, ei.value.event) == ("prepared", "prepare")


def test_finalize_before_commit_is_refused_and_abandon_keeps_the_old_epoch(node):
    rt, tp, store, audit = node
    _prepare_refresh(rt, tp)
    with pytest.raises(ServiceError) as ei:
        tp.finalize_job(JOB, COORD, {"key_id": KEY, "epoch": 1})
    assert ei.value.code == "not_committed"
    assert store.count_presignatures(KEY, epoch=0) == 1
    tp.abandon_prepared(JOB, states.PREPARED)
    assert store.pending_for_job(JOB) is None
    assert store.get_key(KEY)["epoch"] == 0
    assert store.core.get_sealed_secrets(KEY, 1) == {}
    assert list(store.core.get_sealed_secrets(KEY, 0)) == ["share"]


def test_a_commit_with_nothing_prepared(node):
    rt, tp, store, audit = node
    with pytest.raises(ServiceError) as ei:
        tp.commit_job(JOB, COORD, {"key_id": KEY, "epoch": 1})
    assert ei.value.code == "not_prepared"
    # a node already running that epoch confirms it
    assert tp.commit_job(JOB, COORD, {"key_id": KEY, "epoch": 0}) == {"committed": True, "epoch": 0}
    with pytest.raises(ServiceError) as ei:
        tp.commit_job(JOB, COORD, {})
    assert ei.value.code == "not_found"


@pytest.mark.parametrize("named", ["e" * 16, None], ids=["another", "none"])
def test_a_commit_naming_another_key_state_than_prepared_is_refused(node, named):
    """A coordinator that commits a result this party did not end with (a split it made, or a
    commit without the agreed fingerprint) is refused; nothing is put in use."""
    rt, tp, store, audit = node
    _prepare_refresh(rt, tp)
    with pytest.raises(ServiceError) as ei:
        tp.commit_job(JOB, COORD, {"key_id": KEY, "epoch": 1, "fingerprint": named})
    assert (ei.value.code, ei.value.message) == (
        "result_mismatch", f"node-1: the commit of job {JOB} names another key state than this node prepared")
    assert store.pending_for_job(JOB)["state"] == states.PREPARED
    assert store.get_key(KEY)["epoch"] == 0 and audit.entries == [] and tp.pool.calls == []
