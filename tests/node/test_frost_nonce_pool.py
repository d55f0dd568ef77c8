"""The FROST nonce pool (appliance/pools/frost_nonces.py, appliance/storage/frost_nonces.py)
against a real SoftHSM2 token: each pair under its own HSM key, spent durably before it is
opened, never twice, never after a restore of an older database, and discarded with its epoch."""

from __future__ import annotations

import asyncio
import shutil
from types import SimpleNamespace

import pytest

from appliance.errors import ServiceError
from appliance.jobs.model import JobRun
from appliance.pools.frost_nonces import MAX_HELD, MAX_PUBLISH, FrostNoncePool
from appliance.presig_keys import destroy_spent_presignature_keys
from appliance.sealed import nonce_key_label
from appliance.signing.sign_job import SignJob
from appliance.storage import Store
from appliance.tss.frost import pooled, simulate
from appliance.tss.frost.sign import new_nonces
from appliance.tss.group import SeededRNG
from appliance.tss.protocol import IdentityDirectory
from appliance.tss.runner import Identities, run

pytest.register_assert_rewrite("tests.hsm_fixtures")
from tests.hsm_fixtures import requires_softhsm  # noqa: E402

# fixtures: softhsm_token, open_hsms, hsm
pytest_plugins = ["tests.hsm_fixtures"]

pytestmark = [pytest.mark.hsm, requires_softhsm]

IDS = Identities(range(3), SeededRNG("nonce-pool-ids"))
SHARES = simulate.keygen(3, 2, "schnorr-bip340", rng=SeededRNG(b"nonce-pool"), identities=IDS)
KEY = "key-frost"


class _Late:
    def __init__(self, value):
        self.value = value

    def __call__(self):
        return self.value


def _pool(hsm, store, index=0, *, sealer=None):
    directory = IdentityDirectory({0: hsm.identity_public_key, 1: IDS.signers[1].public_key(),
                                   2: IDS.signers[2].public_key()})
    peers = {i: SimpleNamespace(id=f"node-{i + 1}") for i in range(3)}
    rt = SimpleNamespace(index=index, directory=directory, me=peers[index], peers=peers)
    return FrostNoncePool(rt, nonces=_Late(store), hsm=_Late(sealer or hsm))


#: the sealing mechanism is exercised both ways by the first test; the others run on one token
ONE_TOKEN = pytest.mark.parametrize("softhsm_token", ["all"], indirect=True)


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "node.db")
    yield s
    s.close()


def test_each_pair_sealed_under_its_own_key_spent_once(hsm, store):
    pool = _pool(hsm, store)
    published = asyncio.run(pool.make(SHARES[0], KEY, 0, 2))
    assert hsm.list_nonce_keys() == sorted(nonce_key_label(c.nonce_id) for c in published)
    assert store.count_frost_nonces(KEY, 0) == 2
    mine = published[0]
    nonces = asyncio.run(pool.spend(KEY, 0, mine))
    assert (nonces.nonce_id, nonces.D, nonces.E) == (mine.nonce_id, mine.D, mine.E)
    assert store.frost_nonce_state(mine.nonce_id) == "spent"
    assert nonce_key_label(mine.nonce_id) not in hsm.list_nonce_keys()  # destroyed on spend
    with pytest.raises(ServiceError) as e:  # a second spend: refused by the row
        asyncio.run(pool.spend(KEY, 0, mine))
    assert (e.value.code, e.value.message) == ("nonce_unavailable", "this nonce pair is spent")
    # another epoch, or other commitments, name no pair of this node
    with pytest.raises(ServiceError) as e:
        asyncio.run(pool.spend(KEY, 1, published[1]))
    assert (e.value.code, e.value.message) == (
        "nonce_unavailable", "no such nonce pair of this key, epoch and party on this node")
    assert store.frost_nonce_state(published[1].nonce_id) == "available"


class _HsmSigner:
    def __init__(self, hsm):
        self.hsm = hsm

    def sign(self, digest):
        return self.hsm.sign_digest(digest)

    def public_key(self):
        return self.hsm.identity_public_key


class _CheckingSealer:
    """The HSM, recording the row's state at the moment the pair is opened."""

    def __init__(self, hsm, store):
        self.hsm, self.store, self.seen = hsm, store, []

    def __getattr__(self, name):
        return getattr(self.hsm, name)

    async def consume_presignature_async(self, context, blob):
        self.seen.append(self.store.frost_nonce_state(context.presig_id))
        return await self.hsm.consume_presignature_async(context, blob)


@ONE_TOKEN
def test_marked_spent_durably_before_it_is_opened(hsm, store):
    sealer = _CheckingSealer(hsm, store)
    pool = _pool(hsm, store, sealer=sealer)
    mine = asyncio.run(pool.make(SHARES[0], KEY, 0, 1))[0]
    asyncio.run(pool.spend(KEY, 0, mine))
    assert sealer.seen == ["spent"]


@ONE_TOKEN
def test_restored_database_cannot_bring_a_spent_pair_back(hsm, store, tmp_path):
    pool = _pool(hsm, store)
    mine = asyncio.run(pool.make(SHARES[0], KEY, 0, 1))[0]
    store.backup_to(tmp_path / "old.db")  # a backup taken while the pair was available
    asyncio.run(pool.spend(KEY, 0, mine))
    store.close()
    shutil.copy(tmp_path / "old.db", tmp_path / "node.db")
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"node.db{suffix}").unlink(missing_ok=True)
    restored = Store(tmp_path / "node.db")
    try:
        assert restored.frost_nonce_state(mine.nonce_id) == "available"  # the old row says so
        with pytest.raises(ServiceError) as e:
            asyncio.run(_pool(hsm, restored).spend(KEY, 0, mine))
        assert (e.value.code, e.value.message) == (
            "nonce_unavailable", "this nonce pair's HSM key is gone: it was spent before (a database "
            "restored from an older copy?); it is never used")
        assert restored.frost_nonce_state(mine.nonce_id) == "spent"
    finally:
        restored.close()


@ONE_TOKEN
def test_commitments_accepted_only_signed_then_one_round_signs(hsm, store, tmp_path):
    """Node 0 (HSM) publishes; node 1 accepts only signed commitments; a coordinator picks one
    per signer, once; the pooled pairs sign in one round."""
    pool0 = _pool(hsm, store)
    published = asyncio.run(pool0.make(SHARES[0], KEY, 0, 2, holder=1))
    own = asyncio.run(pool0.make(SHARES[0], KEY, 0, 1))
    other = Store(tmp_path / "node1.db")
    try:
        pool1 = _pool(hsm, other, index=1)
        bad = [published[0], pooled.PooledCommitment(0, published[1].nonce_id, published[0].D,
                                                     published[0].E, published[1].signature)]
        with pytest.raises(ServiceError) as e:
            pool1.accept(SHARES[1], KEY, 0, 0, bad)
        assert (e.value.code, e.value.message) == (
            "signing_refused", "check 7: party 0's pooled commitment is not signed by it for this key")
        assert other.count_frost_commitments(KEY, 0) == {}
        assert pool1.accept(SHARES[1], KEY, 0, 0, published) == 2
        assert pool1.accept(SHARES[1], KEY, 0, 0, published) == 0  # a repeat is ignored
        # node 1's own pair, published through the software identity of the test
        pair1 = new_nonces(SHARES[1], SeededRNG(b"n1"))
        n1 = pooled.publish(SHARES[1], pair1, IDS.signers[1])
        # coordinator node 0 picks for {0, 1}: it has no commitment of node 1 yet
        assert pool0.pick(KEY, 0, [0, 1]) is None
        assert store.count_frost_nonces(KEY, 0, holder=0, unpicked=True) == 1  # nothing marked
        pool0.accept(SHARES[0], KEY, 0, 1, [n1])
        chosen = pool0.pick(KEY, 0, [0, 1])
        assert chosen == [own[0], n1]  # its own pair kept for itself, never one published to node 1
        assert pool0.pick(KEY, 0, [0, 1]) is None  # node 1's only commitment is handed out
        mine = asyncio.run(pool0.spend(KEY, 0, chosen[0]))
        signers = {0: _HsmSigner(hsm), 1: IDS.signers[1]}
        parties = {i: pooled.FrostPooledSignParty(b"sid", SHARES[i], b"\x07" * 32, chosen,
                                                  mine if i == 0 else pair1, signers[i],
                                                  pool0.rt.directory, SeededRNG(b"r"), merkle_root=b"")
                   for i in (0, 1)}
        sigs = set(run(parties).values())
        assert len(sigs) == 1 and len(sigs.pop()) == 64
    finally:
        other.close()


def _pooled_job(coordinator, commitments):
    return JobRun({"job_id": "job-x", "kind": "sign", "scheme": "schnorr-bip340", "key_id": KEY, "epoch": 0,
                   "coordinator": coordinator, "parties": sorted(c.index for c in commitments),
                   "items": [{"message": "07" * 32}], "commitments": [c.to_json() for c in commitments]})


@ONE_TOKEN
def test_a_pair_is_spent_only_in_a_job_of_the_coordinator_it_was_published_to(hsm, store):
    """Each pooled pair goes to ONE coordinator (its holder): a sign job coordinated by another
    node that names it (node 2 naming a pair node 0 published to node 1) is refused at join
    (SignJob.attach) and the pair stays available for its own coordinator."""
    pool = _pool(hsm, store)
    to_node1 = asyncio.run(pool.make(SHARES[0], KEY, 0, 1, holder=1))[0]
    other = pooled.publish(SHARES[2], new_nonces(SHARES[2], SeededRNG(b"n2")), IDS.signers[2])
    sign_job = SignJob(pool.rt, None, None, None, None, None, key_store=None, presigs=None, replay=None,
                       hsm=None, signer=None, nonce_pool=pool)
    with pytest.raises(ServiceError) as e:
        sign_job.attach(_pooled_job(2, [to_node1, other]))
    assert (e.value.code, e.value.message) == (
        "nonce_unavailable", "this nonce pair was published to another coordinator")
    assert store.frost_nonce_state(to_node1.nonce_id) == "available"
    mine = pooled.publish(SHARES[1], new_nonces(SHARES[1], SeededRNG(b"n1")), IDS.signers[1])
    job = _pooled_job(1, [to_node1, mine])
    sign_job.attach(job)  # the coordinator it was published to
    assert job.presig_taken.nonce_id == to_node1.nonce_id
    assert store.frost_nonce_state(to_node1.nonce_id) == "spent"


def _signed_by_1(D, E, nonce_id):
    digest = pooled.commitment_digest(SHARES[1].public_fingerprint(), 1, nonce_id, D, E)
    return pooled.PooledCommitment(1, nonce_id, D, E, IDS.signers[1].sign(digest))


@ONE_TOKEN
def test_commitments_held_for_a_coordinator_are_bounded_and_valid_elements(hsm, store):
    """A holder publishing to node 0 (frost_nonces jobs, authorized by its signature alone)
    cannot make node 0 store without bound: at most MAX_HELD available commitments per (key,
    epoch, party), the [frost] pool's own bound; and each commitment is two valid group
    elements, checked when it is received, not when a signer later refuses it (check 4)."""
    pool = _pool(hsm, store)
    pair = new_nonces(SHARES[1], SeededRNG(b"elements"))
    bad = _signed_by_1(pair.D, b"\x02" + b"\xff" * 32, b"\x01" * 16)  # signed, but E is no point
    with pytest.raises(ServiceError) as e:
        pool.accept(SHARES[0], KEY, 0, 1, [bad])
    assert (e.value.code, e.value.message) == (
        "bad_job", "party 1's pooled commitment is not two valid group elements")
    assert store.count_frost_commitments(KEY, 0) == {}
    for b in range(0, MAX_HELD, MAX_PUBLISH):  # distinct ids, the same valid points: cheap
        n = min(MAX_PUBLISH, MAX_HELD - b)
        assert pool.accept(SHARES[0], KEY, 0, 1, [_signed_by_1(pair.D, pair.E, (b + k).to_bytes(16, "big"))
                                                  for k in range(n)]) == n
    assert store.count_frost_commitments(KEY, 0) == {1: MAX_HELD}
    with pytest.raises(ServiceError) as e:
        pool.accept(SHARES[0], KEY, 0, 1, [_signed_by_1(pair.D, pair.E, b"\xff" * 16)])
    assert (e.value.code, e.value.message) == (
        "nonce_pool_full", f"node-2 already has {MAX_HELD} pooled commitments here for this key")
    assert store.count_frost_commitments(KEY, 0) == {1: MAX_HELD}


@ONE_TOKEN
def test_old_epoch_pool_discarded_and_keys_destroyed_at_start(hsm, store):
    pool = _pool(hsm, store)
    old = asyncio.run(pool.make(SHARES[0], KEY, 0, 2))
    new = asyncio.run(pool.make(SHARES[0], KEY, 1, 1))
    labels = store.discard_frost_nonces(KEY, before_epoch=1)
    assert sorted(labels) == sorted(nonce_key_label(c.nonce_id) for c in old)
    assert store.count_frost_nonces(KEY, 0) == 0 and store.count_frost_nonces(KEY, 1) == 1
    assert destroy_spent_presignature_keys(store, hsm) == 2  # what a node does at start-up
    assert hsm.list_nonce_keys() == [nonce_key_label(new[0].nonce_id)]
    assert store.frost_nonce_keys_to_destroy() == []
