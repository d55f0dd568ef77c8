"""The aux-info pool on one node (issue 18 aim 4), over a real NodeStore: every party checks the
coordinator's choice of pooled aux-info for a keygen (exact codes), a key is counted against
its aux-info in the transaction that stages it (never past the cap), the pool opens an aux_gen
job only on the committee's lowest node and only when short, and a keygen takes the fullest."""

from __future__ import annotations

import asyncio
import os
import types

import pytest

from appliance.errors import ServiceError
from appliance.jobs.model import JobFailed
from appliance.keys.key_jobs import KeyChangeJob
from appliance.pools.aux_pool import AuxGenJob, AuxPool, aux_context
from appliance.storage import ConflictError, NodeStore
from appliance.tss.group import G, SeededRNG
from appliance.tss.keygen import KeygenParty
from appliance.tss.keyshare import AuxSecret, PartyAux, PooledAux
from appliance.tss.runner import Identities, run
from tests.node.fakes import FakePorts, Users, fake_runtime

AUX = "aux_" + "a" * 24
OTHER_AUX = "aux_" + "b" * 24
PAIR_AUX = "aux_" + "c" * 24


def _sealed() -> bytes:
    return bytes([1, 13]) + b"appliance/kek" + os.urandom(12 + 40)


def _key(n: int) -> str:
    return f"key_{n:024x}"


@pytest.fixture
def node(tmp_path):
    store = NodeStore(tmp_path / "node.db")
    rt, ports = fake_runtime(Users().policy), FakePorts(store)
    rt.config = types.SimpleNamespace(keys_per_aux=2, aux_pool=1, paillier_bits=2048, aux_low_water=1)
    rt.cluster = types.SimpleNamespace(nodes=[types.SimpleNamespace(index=i) for i in range(3)])
    opened: list = []

    async def coordinate(spec):
        opened.append(spec)

    async def healthy(indices, **kw):
        return sorted(indices), []

    pool = AuxPool(rt, types.SimpleNamespace(split_healthy=healthy), coordinate, lambda: 0.0, lambda: False,
                   aux_store=ports.slot("key_store"), hsm=ports.slot("hsm"))
    jobs = KeyChangeJob(rt, None, None, None, None, None, **ports.slots("key_store", "changes", "replay", "hsm",
                                                                         "signer"),
                        peers=ports.peers, aux=pool, aux_store=ports.slot("key_store"))
    store.add_aux(AUX, [0, 1, 2], 2048, b"\x01" * 32, _sealed())
    store.add_aux(PAIR_AUX, [0, 1], 2048, b"\x02" * 32, _sealed())
    yield types.SimpleNamespace(rt=rt, store=store, pool=pool, jobs=jobs, opened=opened)
    store.close()


def _keygen(aux_id, parties=(0, 1, 2), bits=2048, **kw) -> dict:
    return {"kind": "keygen", "key_id": _key(99), "parties": list(parties), "threshold": 2,
            "paillier_bits": bits, "scheme": "ecdsa-secp256k1", "aux_id": aux_id, **kw}


def _refused(node, spec) -> ServiceError:
    with pytest.raises(ServiceError) as ei:
        asyncio.run(node.jobs.admit(spec, None))
    return ei.value


def _stage(store, n: int, aux_id: str = AUX, cap: int = 2) -> None:
    store.put_pending_key(_key(n), G.to_bytes(), 2, [0, 1, 2], 0, 2048, _sealed(), b"\x07" * 32, aux=(aux_id, cap))


def test_a_keygen_naming_a_usable_pooled_aux_info_is_admitted(node):
    asyncio.run(node.jobs.admit(_keygen(AUX), None))


def test_every_party_refuses_a_wrong_foreign_or_full_aux_info_with_its_code(node):
    e = _refused(node, _keygen(OTHER_AUX))
    assert (e.code, e.message) == ("aux_unknown", f"node-1: holds no aux-info {OTHER_AUX}")
    e = _refused(node, _keygen(PAIR_AUX))  # made for node-1 and node-2 only: foreign to this committee
    assert (e.code, e.message) == ("aux_wrong_committee", f"node-1: aux-info {PAIR_AUX} was made for nodes "
                                   "node-1, node-2, not this key's")
    e = _refused(node, _keygen(AUX, bits=3072))
    assert (e.code, e.message) == ("aux_wrong_committee", f"node-1: aux-info {AUX} has 2048-bit moduli, the key "
                                   "asks for 3072")
    e = _refused(node, _keygen(AUX, scheme="ed25519", paillier_bits=0))
    assert (e.code, e.message) == ("bad_job", "only an ECDSA keygen takes a pooled aux-info")
    _stage(node.store, 1)
    _stage(node.store, 2)  # the cap (keys_per_aux = 2) reached
    e = _refused(node, _keygen(AUX))
    assert (e.code, e.message) == ("aux_exhausted", f"node-1: aux-info {AUX} serves 2 keys already (at most 2)")


def test_a_key_is_bound_in_the_transaction_that_stages_it_and_never_past_the_cap(node):
    _stage(node.store, 1)
    _stage(node.store, 2)
    with pytest.raises(ConflictError):
        _stage(node.store, 3)
    assert node.store.get_key(_key(3)) is None  # nothing of the refused key was stored
    assert [node.store.aux_of_key(_key(n)) for n in (1, 2, 3)] == [AUX, AUX, None]
    assert node.store.get_aux(AUX)["keys_bound"] == 2
    with pytest.raises(ConflictError):  # a key is bound to one aux-info only
        node.store.aux.bind_aux(_key(1), PAIR_AUX, 2)


def test_the_pool_opens_an_aux_gen_job_only_when_short_and_only_on_the_lowest_node(node):
    asyncio.run(node.pool._round(1))
    assert node.opened == []  # one usable aux-info for the whole committee, room 2: enough
    _stage(node.store, 1)
    node.rt.config.aux_low_water = 2  # room 1 is below the low-water mark: the next is made
    asyncio.run(node.pool._round(1))
    assert [s["kind"] for s in node.opened] == ["aux_gen"]
    node.opened.clear()
    node.rt.config.aux_low_water = 1
    asyncio.run(node.pool._round(1))
    assert node.opened == []
    _stage(node.store, 2)
    asyncio.run(node.pool._round(1))
    [spec] = node.opened
    assert (spec["kind"], spec["parties"], spec["paillier_bits"], spec["coordinator"]) == ("aux_gen", [0, 1, 2],
                                                                                           2048, 0)
    node.rt.index = 1
    node.opened.clear()
    asyncio.run(node.pool._round(1))
    assert node.opened == []


def test_a_keygen_takes_the_fullest_aux_info_or_falls_back(node):
    node.store.add_aux(OTHER_AUX, [0, 1, 2], 2048, b"\x03" * 32, _sealed())
    _stage(node.store, 1, OTHER_AUX)
    assert node.pool.choose([2, 0, 1], 2048) == OTHER_AUX
    _stage(node.store, 2, OTHER_AUX)
    assert node.pool.choose([0, 1, 2], 2048) == AUX
    assert node.pool.choose([1, 2], 2048) is None
    assert [c for c in node.rt.metrics.counted if c[0] == "aux_event"] == [
        ("aux_event", "taken"), ("aux_event", "taken"), ("aux_event", "fallback")]


def test_an_aux_gen_job_is_checked_before_it_is_joined(node):
    job = AuxGenJob(node.rt, None, None, node.pool, aux_store=node.pool.aux_store, hsm=node.pool.hsm, signer=None)
    spec = {"kind": "aux_gen", "aux_id": AUX, "parties": [0, 1, 2], "paillier_bits": 2048}
    with pytest.raises(ServiceError) as ei:
        asyncio.run(job.admit(spec, None))
    assert (ei.value.code, ei.value.message) == ("aux_exists", "aux id already used")
    with pytest.raises(ServiceError) as ei:
        asyncio.run(job.admit({**spec, "aux_id": OTHER_AUX, "paillier_bits": 1024}, None))
    assert (ei.value.code, ei.value.message) == ("bad_job", "malformed aux_gen job")
    asyncio.run(job.admit({**spec, "aux_id": OTHER_AUX}, None))


BIND_AUX = "aux_" + "d" * 24


def _bindable(node, aux_id: str = BIND_AUX):
    """A pooled aux-info of the whole committee sealed for node-1 (toy moduli: it only has to
    unseal and bind, never to prove) and node-1's share of a fresh in-memory DKG."""
    ids = Identities(range(3), SeededRNG("bind ids"))
    shares = run({i: KeygenParty(b"bind-dkg-session", i, [0, 1, 2], 2, ids.signers[i], ids.directory,
                                 SeededRNG(f"bind {i}")) for i in range(3)})
    aux = {i: PartyAux(p * q, 1, 1, 1) for i, (p, q) in enumerate([(11, 13), (17, 19), (23, 29)])}
    pooled = PooledAux(0, [0, 1, 2], 2048, aux, AuxSecret(11, 13, 1, 1, 1), b"\x05" * 32)
    blob = _sealed()
    node.pool.hsm().blobs[blob] = (aux_context(aux_id), pooled.to_bytes())
    node.store.add_aux(aux_id, [0, 1, 2], 2048, pooled.fingerprint(), blob)

    async def seal(key_id, share):
        return _sealed()

    node.jobs.shares = types.SimpleNamespace(seal=seal)
    return shares[0]


@pytest.mark.parametrize("bound", [True, False], ids=["bound", "unbound"])
def test_a_key_id_already_stored_is_refused_as_key_exists_not_aux_exhausted(node, bound):
    share = _bindable(node)
    if bound:
        _stage(node.store, 99)  # the same key id, bound to another aux-info
    else:
        node.store.put_pending_key(_key(99), G.to_bytes(), 2, [0, 1, 2], 0, 2048, _sealed(), b"\x07" * 32)
    job = types.SimpleNamespace(spec=_keygen(BIND_AUX), result=None)
    with pytest.raises(JobFailed) as ei:
        asyncio.run(node.jobs._bind_pooled_and_stage(job, share))
    assert (ei.value.error.code, ei.value.error.message) == ("key_exists", f"node-1: key id {_key(99)} already used")
    assert node.store.get_aux(BIND_AUX)["keys_bound"] == 0 and node.store.aux_of_key(_key(99)) == (AUX if bound
                                                                                                    else None)


def test_a_pooled_aux_info_binds_a_fresh_share_in_the_transaction_that_stages_it(node):
    share = _bindable(node)
    job = types.SimpleNamespace(spec=_keygen(BIND_AUX), result=None)
    asyncio.run(node.jobs._bind_pooled_and_stage(job, share))
    assert node.store.aux_of_key(_key(99)) == BIND_AUX and node.store.get_key(_key(99))["status"] == "pending"
    assert job.result["fingerprint"]


def test_a_participant_refuses_aux_gen_jobs_past_its_limit_of_aux_info_with_room(node):
    """[aux] pool = 1 here: at most 2 aux-info of a committee with room; the fixture holds one
    of the whole committee (and one of another), so one more is made and the next refused."""
    job = AuxGenJob(node.rt, None, None, node.pool, aux_store=node.pool.aux_store, hsm=node.pool.hsm, signer=None)
    spec = {"kind": "aux_gen", "aux_id": OTHER_AUX, "parties": [0, 1, 2], "paillier_bits": 2048}
    asyncio.run(job.admit(spec, None))
    node.store.add_aux(OTHER_AUX, [0, 1, 2], 2048, b"\x03" * 32, _sealed())
    with pytest.raises(ServiceError) as ei:
        asyncio.run(job.admit({**spec, "aux_id": BIND_AUX, "paillier_bits": 3072}, None))
    assert (ei.value.code, ei.value.message) == ("aux_pool_full", "node-1: holds 2 aux-info of this committee with "
                                                 "room already (at most 2)")
    _stage(node.store, 1, OTHER_AUX)
    _stage(node.store, 2, OTHER_AUX)  # full: it no longer counts
    asyncio.run(job.admit({**spec, "aux_id": BIND_AUX}, None))
