"""appliance.storage (the core Store): schema, keys, sealed secrets, prime pool, sign requests; and the raw
database file never holds a plaintext secret."""

from __future__ import annotations

import os
import sqlite3

import pytest

from appliance.sealed import SealContext
from appliance.storage import (
    SCHEMA_VERSION,
    ConflictError,
    NotFoundError,
    NotSealedError,
    Store,
    StoreError,
)

pytest.register_assert_rewrite("tests.hsm_fixtures")
from tests.hsm_fixtures import requires_softhsm  # noqa: E402

# fixtures: softhsm_token, open_hsms, hsm, two_tokens
pytest_plugins = ["tests.hsm_fixtures"]

# The module runs with the HSM tests; only the tests that seal need SoftHSM2 itself.
pytestmark = pytest.mark.hsm


def fake_sealed() -> bytes:
    """A syntactically valid sealed blob (for tests of the store alone; never unsealed)."""
    return bytes([1, 13]) + b"appliance/kek" + os.urandom(12 + 40)


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "node.db")
    yield s
    s.close()


def add_key(store, key_id="key-1", epoch=0):
    return store.put_key(key_id, threshold=2, participants=["n1", "n2", "n3"],
                         public_key=b"\x02" + b"\x01" * 32, chain_code=b"\x07" * 32, epoch=epoch)


def test_schema_wal_foreign_keys_and_migrations(tmp_path, store):
    assert store.schema_version == SCHEMA_VERSION == 12
    db = store.db.conn
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    add_key(store)
    store.close()
    again = Store(tmp_path / "node.db")  # reopening does not migrate twice
    assert again.get_key("key-1").threshold == 2
    again.close()
    raw = sqlite3.connect(tmp_path / "node.db")
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(StoreError, match="newer"):
        Store(tmp_path / "node.db")


def test_keys_and_sealed_secrets(store):
    k = add_key(store)
    assert k.participants == ("n1", "n2", "n3") and k.epoch == 0
    with pytest.raises(ConflictError):
        add_key(store)
    with pytest.raises(NotFoundError):
        store.get_key("nope")
    with pytest.raises(ValueError):
        store.put_key("k", threshold=4, participants=["a"], public_key=b"", chain_code=b"")
    sealed = {"share": fake_sealed(), "paillier": fake_sealed(), "ring_pedersen": fake_sealed()}
    store.put_sealed_secrets("key-1", 0, sealed)
    assert store.get_sealed_secrets("key-1", 0) == sealed
    assert store.get_sealed_secret("key-1", 0, "share") == sealed["share"]
    with pytest.raises(ConflictError):
        store.put_sealed_secret("key-1", 0, "share", fake_sealed())
    with pytest.raises(NotSealedError):  # plaintext cannot go in by mistake
        store.put_sealed_secret("key-1", 1, "share", b"\x11" * 32)
    with pytest.raises(NotFoundError):
        store.put_sealed_secret("no-key", 0, "share", fake_sealed())
    with pytest.raises(ValueError):
        store.put_sealed_secret("key-1", 1, "other", fake_sealed())
    # refresh: new epoch, then old secrets dropped
    store.put_sealed_secrets("key-1", 1, {"share": fake_sealed()})
    assert store.set_key_epoch("key-1", 1, expected=0).epoch == 1
    with pytest.raises(ConflictError):
        store.set_key_epoch("key-1", 2, expected=0)
    assert store.delete_sealed_secrets("key-1", before_epoch=1) == 3
    assert store.get_sealed_secrets("key-1", 0) == {}
    assert list(store.get_sealed_secrets("key-1", 1)) == ["share"]
    assert [k.key_id for k in store.list_keys()] == ["key-1"]


def test_delete_pending_epoch_and_unfinished_key(store):
    add_key(store)
    store.put_sealed_secrets("key-1", 0, {"share": fake_sealed()})
    store.put_sealed_secrets("key-1", 1, {"share": fake_sealed()})  # a refresh that did not finish
    with pytest.raises(ValueError):
        store.delete_sealed_secrets("key-1")
    with pytest.raises(ValueError):
        store.delete_sealed_secrets("key-1", before_epoch=1, epoch=1)
    assert store.delete_sealed_secrets("key-1", epoch=1) == 1
    assert list(store.get_sealed_secrets("key-1", 0)) == ["share"]
    assert store.get_sealed_secrets("key-1", 1) == {}
    # the epoch can be filled again by the next refresh
    store.put_sealed_secrets("key-1", 1, {"share": fake_sealed()})
    # an unfinished DKG: the key, its secrets and presignatures go; labels to destroy come back
    add_key(store, "key-2")
    store.put_sealed_secrets("key-2", 0, {"share": fake_sealed()})
    store.add_presignature(b"\x01" * 16, key_id="key-2", epoch=0, signer_set=[0, 1], R=b"\x02" * 33,
                           sealed=fake_sealed(), hsm_key_label="presig-0101")
    assert store.count_presignatures("key-2", epoch=0) == 1 and store.count_presignatures("key-2", epoch=1) == 0
    assert store.delete_key("key-2") == ["presig-0101"]
    with pytest.raises(NotFoundError):
        store.get_key("key-2")
    assert store.list_presignatures("key-2") == []
    with pytest.raises(NotFoundError):
        store.delete_key("key-2")
    # a key with sign requests keeps its history
    store.create_sign_request("req-1", key_id="key-1", initiator="alice", digest=b"\x00" * 32)
    with pytest.raises(ConflictError):
        store.delete_key("key-1")
    store.note_presignature("req-1", b"\x09" * 16)
    assert store.get_sign_request("req-1").presig_id == b"\x09" * 16
    assert store.get_sign_request("req-1").status == "pending"


def test_prime_pool_hands_each_prime_out_once(store):
    blobs = [fake_sealed() for _ in range(3)]
    assert store.add_sealed_primes(1536, blobs) == 3
    store.add_sealed_primes(1024, [fake_sealed()])
    assert store.count_sealed_primes(1536) == 3
    got = [store.take_sealed_prime(1536) for _ in range(4)]
    assert [g[1] for g in got[:3]] == blobs and got[3] is None
    assert store.count_sealed_primes(1536) == 0 and store.count_sealed_primes(1024) == 1
    with pytest.raises(NotSealedError):
        store.add_sealed_primes(1536, [b"\x01" * 5])


def test_sign_requests(store):
    add_key(store)
    r = store.create_sign_request("req-1", key_id="key-1", initiator="alice", digest=b"\x01" * 32,
                                  request=b"signed http request")
    assert r.status == "pending" and r.digest == b"\x01" * 32
    with pytest.raises(ConflictError):
        store.create_sign_request("req-1", key_id="key-1", initiator="alice", digest=b"\x01" * 32)
    with pytest.raises(NotFoundError):
        store.create_sign_request("req-2", key_id="nope", initiator="a", digest=b"\x01" * 32)
    with pytest.raises(ValueError):
        store.create_sign_request("req-3", key_id="key-1", initiator="a", digest=b"short")
    store.create_sign_request("req-4", key_id="key-1", initiator="alice", payload=b"{}",
                              payload_type="eip712")
    store.update_sign_request("req-1", status="approved", expected_status="pending")
    with pytest.raises(ConflictError):
        store.update_sign_request("req-1", status="signing", expected_status="pending")
    done = store.update_sign_request("req-1", status="signed", expected_status=("approved",),
                                     result=b'{"r": 1}')
    assert done.status == "signed" and done.result == b'{"r": 1}'
    assert [r.request_id for r in store.list_sign_requests(status="pending")] == ["req-4"]
    assert len(store.list_sign_requests(key_id="key-1")) == 2


@requires_softhsm
def test_database_file_never_holds_a_plaintext_secret(tmp_path, hsm):
    store = Store(tmp_path / "node.db")
    add_key(store)
    secrets_ = {
        "share": os.urandom(32),
        "paillier": os.urandom(384),
        "ring_pedersen": os.urandom(384),
    }
    store.put_sealed_secrets("key-1", 0, {
        kind: hsm.seal(SealContext(kind, "key-1", 0), value) for kind, value in secrets_.items()
    })
    primes = [os.urandom(192) for _ in range(4)]
    store.add_sealed_primes(1536, [hsm.seal(SealContext("prime"), p) for p in primes])
    presigs = []
    for _ in range(3):
        ctx = SealContext.presignature("key-1", 0, os.urandom(32), b"\x02" + os.urandom(32), (0, 1))
        plain = os.urandom(200)
        presigs.append(plain)
        store.add_presignature(ctx.presig_id, key_id="key-1", epoch=0, signer_set=ctx.signer_set,
                               R=ctx.R, sealed=hsm.seal_presignature(ctx, plain),
                               hsm_key_label=f"appliance/presig/{ctx.presig_id.hex()}")
    plaintexts = list(secrets_.values()) + primes + presigs

    def leaked() -> list[int]:
        files = [tmp_path / n for n in ("node.db", "node.db-wal", "node.db-shm")]
        data = b"".join(f.read_bytes() for f in files if f.exists())
        hits = []
        for i, p in enumerate(plaintexts):
            # any 12-byte window of a secret would be a leak
            if any(p[j:j + 12] in data for j in range(0, len(p) - 11, 4)):
                hits.append(i)
        return hits

    assert (tmp_path / "node.db-wal").stat().st_size > 0  # WAL really in use
    assert leaked() == []
    store.checkpoint()
    assert leaked() == []
    # and the stored values do unseal to the secrets
    for kind, value in secrets_.items():
        blob = store.get_sealed_secret("key-1", 0, kind)
        assert hsm.unseal(SealContext(kind, "key-1", 0), blob) == value
    store.close()
    assert leaked() == []


def test_discard_presignatures_of_a_key_before_an_epoch_or_all(store):
    add_key(store, "key-2")
    add_key(store, "key-3")
    for n, (key, epoch) in enumerate([("key-2", 0), ("key-2", 1), ("key-2", 1), ("key-3", 0)]):
        store.add_presignature(bytes([n + 1]) * 16, key_id=key, epoch=epoch, signer_set=[0, 1],
                               R=b"\x02" * 33, sealed=fake_sealed(), hsm_key_label=f"presig-{n}")
    assert store.discard_presignatures("key-2", before_epoch=1) == ["presig-0"]
    assert store.discard_presignatures("key-2", before_epoch=1) == []  # spent ones are not again
    assert sorted(store.discard_presignatures("key-2")) == ["presig-1", "presig-2"]
    assert store.count_presignatures("key-3", epoch=0) == 1
