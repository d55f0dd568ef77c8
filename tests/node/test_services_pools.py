"""The presignature pool in process (issue 13), on a real NodeStore on tmp_path: which signer
set a refill round fills, the set a sign request picks, and that a spent presignature is
never handed out again."""

from __future__ import annotations

import asyncio
import os
import types

import pytest

from appliance.errors import ServiceError
from appliance.pools.presign import PresignPool
from appliance.recorder import Recorder
from appliance.signing.requests import SignRequests
from appliance.signing.sign_job import SignJob
from appliance.storage import NodeStore
from appliance.tss.group import G
from tests.node.fakes import FakePorts, Users, fake_runtime

KEY = "key_" + "a" * 24


def _sealed() -> bytes:
    return bytes([1, 13]) + b"appliance/kek" + os.urandom(12 + 40)


@pytest.fixture
def node(tmp_path):
    store = NodeStore(tmp_path / "node.db")
    store.put_pending_key(KEY, G.to_bytes(), 2, [0, 1, 2], 0, 2048, _sealed(), b"\x07" * 32)
    store.set_key_status(KEY, "active")
    rt, ports = fake_runtime(Users().policy), FakePorts(store)
    opened: list = []
    quarantined: set = set()
    changing: set = set()

    async def coordinate(spec):
        opened.append(spec)

    async def healthy(indices, **kw):
        return sorted(indices), []

    pool = PresignPool(rt, health=types.SimpleNamespace(split_healthy=healthy),
                       quarantine=types.SimpleNamespace(
                           not_quarantined=lambda idx: [i for i in idx if i not in quarantined]),
                       coordinate=coordinate, signing_now=lambda: False,
                       key_change_running=lambda key_id: key_id in changing,
                       **ports.slots("key_store", "presigs", "hsm"))
    yield types.SimpleNamespace(rt=rt, ports=ports, store=store, pool=pool, opened=opened, quarantined=quarantined,
                                changing=changing)
    store.close()


def _add(store, signers, n=1) -> list[bytes]:
    ids = [os.urandom(16) for _ in range(n)]
    for pid in ids:
        store.add_presignature(pid, KEY, 0, list(signers), G.to_bytes(), _sealed())
    return ids


def _round(n, target=1) -> list[int] | None:
    n.opened.clear()
    asyncio.run(n.pool._round(target))
    assert len(n.opened) <= 1  # one at a time
    if not n.opened:
        return None
    spec = n.opened[0]
    assert (spec["kind"], spec["key_id"], spec["epoch"], spec["coordinator"]) == ("presign", KEY, 0, 0)
    return spec["parties"]


def test_a_refill_round_fills_the_sets_this_node_leads_that_are_short(node):
    assert _round(node) == [0, 1]
    _add(node.store, [0, 1])
    assert _round(node) == [0, 2]
    _add(node.store, [0, 2])
    _add(node.store, [1, 2], 5)  # led by node-2: never this node's to fill
    assert _round(node) is None
    assert ("set_presignature_counts", {KEY: 7}) in node.rt.metrics.counted
    assert _round(node, target=2) == [0, 1]


def test_a_spent_presignature_is_refilled_and_never_handed_out_again(node):
    (pid,) = _add(node.store, [0, 1])
    _add(node.store, [0, 2])
    assert _round(node) is None
    taken = node.store.take_presignature(pid, reserved=False)
    assert taken is not None and taken.key_id == KEY
    assert node.store.take_presignature(pid, reserved=False) is None
    assert node.store.ready_signer_sets(KEY) == {(0, 2): 1}
    assert _round(node) == [0, 1]


def test_no_refill_for_a_quarantined_set_or_during_a_key_change(node):
    node.quarantined.add(1)
    assert _round(node) == [0, 2]
    node.changing.add(KEY)
    assert _round(node) is None


def test_a_sign_request_picks_a_ready_set_and_not_one_whose_presignatures_are_spent(node):
    svc = SignRequests(node.rt, Recorder(node.rt, node.ports.slot("audit"), node.ports.slot("transactions")), shares=None, reader=None, health=None,
                       quarantine=None, request_use=None, pool=None, coordinate=None, claims=None, peers=node.ports.peers,
                       **node.ports.slots("requests", "statements", "key_store", "presigs"))
    row = node.store.get_key(KEY)
    (pid,) = _add(node.store, [0, 2])
    assert svc._choose_signers(row, [0, 1, 2], 2) == [0, 2]
    node.store.take_presignature(pid, reserved=False)
    assert svc._choose_signers(row, [0, 1, 2], 2) == [0, 1]  # none ready: this node and the first other


def _sign_job(node) -> SignJob:
    return SignJob(node.rt, driver=None, shares=None, pool=node.pool, reader=None,
                   recorder=Recorder(node.rt, node.ports.slot("audit"), node.ports.slot("transactions")),
                   **node.ports.slots("key_store", "presigs", "replay", "hsm", "signer"))


def test_a_sign_job_naming_a_spent_presignature_is_refused(node):
    (pid,) = _add(node.store, [0, 1])
    job = _sign_job(node)
    spec = {"job_id": "job_" + "d" * 24, "kind": "sign", "key_id": KEY, "parties": [0, 1], "epoch": 0,
            "presig_id": pid.hex()}
    first = types.SimpleNamespace(spec=spec, presig_taken=None)
    job.attach(first)
    assert first.presig_taken.key_id == KEY
    assert node.store.count_presignatures(KEY) == 0
    for presig_id in (pid.hex(), os.urandom(16).hex()):  # spent; never made
        with pytest.raises(ServiceError) as ei:
            job.attach(types.SimpleNamespace(spec={**spec, "presig_id": presig_id}, presig_taken=None))
        assert ei.value.code == "presignature_unavailable"


def test_a_sign_job_naming_another_keys_set_or_epochs_presignature_spends_nothing(node):
    """A coordinator's job may only name a presignature of its own key, signer set and epoch:
    one of anything else is refused and left available (it was once spent before the check)."""
    (pid,) = _add(node.store, [0, 1])
    job = _sign_job(node)
    spec = {"job_id": "job_" + "e" * 24, "kind": "sign", "key_id": KEY, "parties": [0, 1], "epoch": 0,
            "presig_id": pid.hex()}
    for other in ({"key_id": "key_" + "b" * 24}, {"parties": [0, 2]}, {"epoch": 1}):
        with pytest.raises(ServiceError) as ei:
            job.attach(types.SimpleNamespace(spec={**spec, **other}, presig_taken=None))
        assert ei.value.code == "presignature_unavailable", other
        assert node.store.count_presignatures(KEY) == 1, other  # still there, still available
    first = types.SimpleNamespace(spec=spec, presig_taken=None)
    job.attach(first)  # its own job takes it
    assert first.presig_taken.presig_id == pid and node.store.count_presignatures(KEY) == 0
