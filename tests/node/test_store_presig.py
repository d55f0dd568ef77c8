"""Presignatures are used at most once: concurrent takers, a process killed mid-way, a
database restored from an old copy; and a restarted node unseals the same share."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import threading
from collections import Counter

import pytest

from appliance.presig_keys import destroy_spent_presignature_keys
from appliance.sealed import SealContext, presig_key_label
from appliance.storage import NodeStore, PresignatureUnavailable, Store
from hsm import HSM, HSMKeyNotFoundError

pytest.register_assert_rewrite("tests.hsm_fixtures")
from tests.hsm_fixtures import (  # noqa: E402
    NODE_ID,
    popen_python,
    requires_softhsm,
    run_python,
)

# fixtures: softhsm_token, open_hsms, hsm, two_tokens
pytest_plugins = ["tests.hsm_fixtures"]

pytestmark = [pytest.mark.hsm, requires_softhsm]

SIGNERS = (0, 2)


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "node.db"


@pytest.fixture
def store(db_path):
    s = Store(db_path)
    s.put_key("key-1", threshold=2, participants=["n0", "n1", "n2"],
              public_key=b"\x02" + b"\x05" * 32, chain_code=b"\x00" * 32)
    yield s
    s.close()


def make_presig(hsm, store, secret: bytes | None = None, signers=SIGNERS):
    ctx = SealContext.presignature("key-1", 0, os.urandom(32), b"\x03" + os.urandom(32), signers)
    secret = secret if secret is not None else os.urandom(96)
    blob = hsm.seal_presignature(ctx, secret)
    store.add_presignature(ctx.presig_id, key_id="key-1", epoch=0, signer_set=signers, R=ctx.R,
                           sealed=blob, hsm_key_label=presig_key_label(ctx.presig_id))
    return ctx, blob, secret


def spend(hsm, store, taken) -> bytes:
    """The node's sequence: taken (durably spent) -> unseal + destroy key -> record."""
    secret = hsm.consume_presignature(taken.context, taken.sealed)
    store.mark_presignature_keys_destroyed([taken.hsm_key_label])
    return secret


def test_take_marks_spent_and_returns_the_blob_once(hsm, store):
    ctx, blob, secret = make_presig(hsm, store)
    make_presig(hsm, store, signers=(0, 1))  # another signer set is not a candidate
    assert store.count_presignatures("key-1", SIGNERS) == 1
    taken = store.take_presignature("key-1", [2, 0])
    assert taken.presig_id == ctx.presig_id and taken.sealed == blob
    assert taken.context == ctx
    assert store.get_presignature(ctx.presig_id).state == "spent"
    assert store.take_presignature("key-1", SIGNERS) is None
    with pytest.raises(PresignatureUnavailable):
        store.take_presignature_by_id(ctx.presig_id)
    assert store.presignature_keys_to_destroy() == [taken.hsm_key_label]
    assert spend(hsm, store, taken) == secret
    assert store.presignature_keys_to_destroy() == []
    assert store.get_presignature(ctx.presig_id).hsm_key_destroyed


def race(stores, fn):
    """Run ``fn(store)`` in one thread per store, all released at once; returns the
    results and the PresignatureUnavailable errors."""
    barrier = threading.Barrier(len(stores))
    wins, losses = [], []

    def run(s):
        barrier.wait()
        try:
            wins.append(fn(s))
        except PresignatureUnavailable as exc:
            losses.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return wins, losses


def test_two_concurrent_takers_one_wins(hsm, store, db_path):
    rounds, takers = 8, 6
    for _ in range(rounds):
        make_presig(hsm, store)
    stores = [Store(db_path) for _ in range(takers)]  # one connection each
    try:
        for _ in range(rounds):
            # everyone goes for the same presignature at once
            target = store.list_presignatures("key-1", state="available")[0].presig_id
            wins, losses = race(stores, lambda s, t=target: s.take_presignature_by_id(t))
            assert len(wins) == 1 and len(losses) == takers - 1
            spend(hsm, store, wins[0])
        # and by (key, signer set): as many winners as presignatures, no double
        for _ in range(3):
            make_presig(hsm, store)

        def drain(s):
            got = []
            while (t := s.take_presignature("key-1", SIGNERS)) is not None:
                got.append(t.presig_id)
            return got

        wins, _ = race(stores, drain)
        got = [pid for w in wins for pid in w]
        assert len(got) == len(set(got)) == 3
    finally:
        for s in stores:
            s.close()


CHILD = """
    import sys, time
    from appliance.storage import Store
    s = Store({db!r})
    pid = bytes.fromhex({pid!r})
    if {mode!r} == "reserve":
        r = s.reserve_presignature("key-1", {signers!r}, request_id="req-9", presig_id=pid)
        assert r is not None and r.presig_id == pid
    else:
        t = s.take_presignature_by_id(pid)
        assert t.presig_id == pid
    print("done", flush=True)
    time.sleep(120)
"""


@pytest.mark.parametrize("mode", ["reserve", "take"])
def test_process_killed_mid_way_never_lets_the_presignature_be_used_again(
    hsm, store, db_path, mode
):
    ctx, blob, _ = make_presig(hsm, store)
    other, _, other_secret = make_presig(hsm, store)
    child = popen_python(CHILD.format(db=str(db_path), pid=ctx.presig_id.hex(), mode=mode,
                                      signers=SIGNERS))
    try:
        line = child.stdout.readline()
        assert line.strip() == "done", child.stderr.read()
    finally:
        child.send_signal(signal.SIGKILL)  # between reserve and spend / take and unseal
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    again = Store(db_path)  # "the node restarts"
    try:
        expected_state = "reserved" if mode == "reserve" else "spent"
        assert again.get_presignature(ctx.presig_id).state == expected_state
        with pytest.raises(PresignatureUnavailable):
            again.take_presignature_by_id(ctx.presig_id)
        with pytest.raises(PresignatureUnavailable):
            again.spend_reserved(ctx.presig_id)
        assert again.reserve_presignature("key-1", SIGNERS, presig_id=ctx.presig_id) is None
        # the next taker gets the other one, then nothing
        taken = again.take_presignature("key-1", SIGNERS)
        assert taken.presig_id == other.presig_id
        assert spend(hsm, again, taken) == other_secret
        assert again.take_presignature("key-1", SIGNERS) is None
        # start-up housekeeping burns the dead reservation and destroys its key
        assert destroy_spent_presignature_keys(again, hsm) == 1
        assert again.get_presignature(ctx.presig_id).state == "spent"
        assert not hsm.presignature_key_exists(presig_key_label(ctx.presig_id))
        with pytest.raises(HSMKeyNotFoundError):
            hsm.unseal_presignature(ctx, blob)
    finally:
        again.close()


def test_reservation_is_bound_to_its_store(hsm, store, db_path):
    ctx, _, secret = make_presig(hsm, store)
    r = store.reserve_presignature("key-1", SIGNERS, request_id="req-1")
    assert r.presig_id == ctx.presig_id and r.request_id == "req-1"
    assert store.take_presignature("key-1", SIGNERS) is None
    with Store(db_path) as other:
        with pytest.raises(PresignatureUnavailable):
            other.spend_reserved(ctx.presig_id)
    taken = store.spend_reserved(ctx.presig_id)
    assert spend(hsm, store, taken) == secret
    with pytest.raises(PresignatureUnavailable):
        store.spend_reserved(ctx.presig_id)


def test_restored_old_database_cannot_unseal_a_spent_presignature(hsm, store, db_path, tmp_path):
    ctx, blob, secret = make_presig(hsm, store)
    backup = tmp_path / "before-spend.db"
    store.backup_to(backup)  # a copy taken before the spend
    taken = store.take_presignature("key-1", SIGNERS)
    assert spend(hsm, store, taken) == secret
    store.close()
    for suffix in ("", "-wal", "-shm"):
        p = db_path.with_name(db_path.name + suffix)
        if p.exists():
            p.unlink()
    shutil.copy(backup, db_path)  # restore the old copy

    restored = Store(db_path)
    try:
        assert restored.get_presignature(ctx.presig_id).state == "available"  # the DB forgot
        taken = restored.take_presignature("key-1", SIGNERS)
        assert taken.sealed == blob
        with pytest.raises(HSMKeyNotFoundError):  # the HSM did not
            hsm.consume_presignature(taken.context, taken.sealed)
        with pytest.raises(HSMKeyNotFoundError):
            hsm.unseal_presignature(ctx, blob)
    finally:
        restored.close()


def test_spent_blob_is_cleared_from_the_database_file(hsm, store, db_path):
    ctx, blob, _ = make_presig(hsm, store)
    taken = store.take_presignature("key-1", SIGNERS)
    spend(hsm, store, taken)
    store.checkpoint()
    data = db_path.read_bytes()
    wal = db_path.with_name(db_path.name + "-wal")
    data += wal.read_bytes() if wal.exists() else b""
    assert blob[-40:] not in data


def test_restart_new_process_unseals_the_same_share(softhsm_token, db_path):
    share = os.urandom(32)
    cfg = softhsm_token.hsm_config()
    with HSM.open(cfg, node_id=NODE_ID) as h:
        ident = h.identity_public_key
        with Store(db_path) as s:
            s.put_key("key-1", threshold=2, participants=["n0", "n1", "n2"],
                      public_key=b"\x02" + b"\x05" * 32, chain_code=b"\x00" * 32)
            sealed = h.seal(SealContext("share", "key-1", 0), share)
            s.put_sealed_secret("key-1", 0, "share", sealed)
    r = run_python(f"""
        import hashlib
        from pathlib import Path
        from appliance.storage import Store
        from appliance.sealed import SealContext
        from hsm import HSM, HSMConfig
        cfg = HSMConfig(token_label={cfg.token_label!r}, pin_file=Path({str(cfg.pin_file)!r}),
                        softhsm_conf=Path({str(cfg.softhsm_conf)!r}))
        h = HSM.open(cfg, node_id={NODE_ID!r}, create_keys=False)
        with h, Store({str(db_path)!r}) as s:
            blob = s.get_sealed_secret("key-1", 0, "share")
            share = h.unseal(SealContext("share", "key-1", 0), blob)
            print(h.identity_public_key.hex(), hashlib.sha256(share).hexdigest())
    """)
    assert r.returncode == 0, r.stderr
    ident_hex, digest = r.stdout.split()
    assert ident_hex == ident.hex()
    assert digest == hashlib.sha256(share).hexdigest()


def test_recording_a_destroyed_key_commits_once_and_again_not_at_all(hsm, db_path):
    """A signature's presignature key is recorded destroyed twice on its coordinator (after
    the unseal, and by the clean-up that destroys it again): one commit for both tables the
    first time, none the second (it changes nothing, so nothing is written or fsynced)."""
    node = NodeStore(db_path)
    try:
        core = node.core
        core.put_key("key-1", threshold=2, participants=["n0", "n1", "n2"],
                     public_key=b"\x02" + b"\x05" * 32, chain_code=b"\x00" * 32)
        make_presig(hsm, core)
        taken = core.take_presignature("key-1", SIGNERS)
        hsm.consume_presignature(taken.context, taken.sealed)
        before = Counter(node.database.commits)
        node.presignature_keys_destroyed([taken.hsm_key_label])
        assert node.database.commits - before == Counter({"node_store.presignature_keys_destroyed": 1})
        assert core.get_presignature(taken.presig_id).hsm_key_destroyed
        node.presignature_keys_destroyed([taken.hsm_key_label])
        node.presignature_keys_destroyed([])
        assert node.database.commits - before == Counter({"node_store.presignature_keys_destroyed": 1})
    finally:
        node.close()
