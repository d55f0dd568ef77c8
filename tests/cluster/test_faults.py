"""Fault injection with real node processes (a 2-of-3 LocalCluster, SoftHSM2 token each).

- kill -9 a node in the middle of presign and in the middle of sign: the request fails within
  its round timeout naming that node; a presignature is never used twice (each node's store
  says it is spent, before and after the restart); a retry with another quorum succeeds; the
  killed node restarts and signs again;
- a slow peer (test-only fault plan ``delay_s``: its protocol messages go out late) makes the
  round time out cleanly, naming it, and nothing else is disturbed;
- the HSM goes away (token directory removed) or never opens (wrong PIN): ``/readyz`` is 503
  with the reason, signing through or with that node is refused, the process stays up, and
  it recovers when the token / PIN is back;
- a corrupted sealed share gives a clear ``sealed_data_corrupt`` error for that key on that
  node only; a corrupted database page leaves the node up but not ready, with a clear reason,
  while the others sign; restored from a backup, nothing is lost;
- quarantine: a node proven to cheat (test-only ``tamper = ["bad_partial"]``: a wrong partial
  signature, validly signed) is named by the identifiable abort, left out of quorums, shown in
  metrics and the audit log, until an admin clears it.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import time

import pytest

from api.client import ApplianceAPIError
from tests.cluster_fixtures import check_signature, cluster_fixture, cluster_marks, digest_of
from tests.signing_flow import approve_if_needed, sign

pytestmark = cluster_marks("faults")

ROUND_TIMEOUT = 4.0
cluster = cluster_fixture(round_timeout=ROUND_TIMEOUT, job_timeout=60.0, test_hooks=True)
STATE: dict = {}
NEUTRAL = {"delay_s": 0.0, "delay_protocols": [], "tamper": []}


async def _key(cluster, name: str = "key") -> dict:
    if name not in STATE:
        STATE[name] = await cluster.client("admin").create_key(threshold=2)
    return STATE[name]


async def _restart(cluster, i: int, *, node: dict | None = None, **testing) -> None:
    await cluster.stop_node(i)
    cluster.configure_faults(i, **{**NEUTRAL, **testing})
    if node:
        cluster.configure_node(i, "node", **node)
    await cluster.start_node(i)


async def _sign_with(cluster, key: dict, via: int, signers: list[int], text: str, timeout: float = 60.0) -> dict:
    ini = cluster.client("initiator", node=via)
    names = [cluster.node_ids[s] for s in signers]
    done = await sign(ini, cluster.client("approver", node=via), key["key_id"], digest_of(text),
                      signers=names, timeout=timeout)
    assert done["signers"] == names
    check_signature(key["public_key"], digest_of(text), done["signature"])
    return done


async def _start_request(cluster, key: dict, via: int, signers: list[int], text: str) -> tuple:
    ini = cluster.client("initiator", node=via)
    req = await ini.request_signature(key["key_id"], digest_of(text),
                                      signers=[cluster.node_ids[s] for s in signers])
    await approve_if_needed(cluster.client("approver", node=via), req)
    return ini, req


async def _expect_failure(ini, req: dict, timeout: float) -> ApplianceAPIError:
    t0 = time.monotonic()
    with pytest.raises(ApplianceAPIError) as ei:
        await ini.wait_signature(req["request_id"], timeout=timeout)
    ei.value.elapsed = time.monotonic() - t0  # type: ignore[attr-defined]
    return ei.value


def _named(err: ApplianceAPIError) -> str:
    return " ".join([err.message] + list(err.missing_nodes or []) + list(err.culprits or []))


def _presig_states(cluster, i: int) -> dict[bytes, str]:
    con = sqlite3.connect(f"file:{cluster.data_dirs[i] / 'node.db'}?mode=ro", uri=True, timeout=10)
    try:
        return {bytes(pid): state for pid, state in con.execute("SELECT presig_id, state FROM presignatures")}
    finally:
        con.close()


async def _wait_for(pred, timeout: float, what: str, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        v = await pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(step)


async def _readyz(cluster, i: int) -> tuple[int, dict]:
    try:
        return 200, await cluster.client("auditor", node=i).readyz()
    except ApplianceAPIError as exc:
        return exc.status, {"message": exc.message}


async def _start_not_ready(cluster, i: int) -> None:
    """Start node i expecting it to stay up but not become ready: it answers /healthz, and its
    /readyz says 503. The node settles its fault (database, HSM) in Node.start, before its
    server listens (api/app.py serve), so the first answer already tells: no waiting out a 6 s
    startup timeout (the checks that follow run while the HSM's retries keep failing)."""
    await cluster.start_node(i, wait="health")
    assert cluster.running(i), f"node {i} exited instead of waiting:\n{cluster.log_tail(i)}"
    assert (await _readyz(cluster, i))[0] == 503


# --------------------------------------------------------------------------------------


async def test_kill_9_in_the_middle_of_presign(cluster):
    key = await _key(cluster)
    # node-3's presign messages go out 1.5 s late; it is killed when it is about to send its
    # second presign round (the event its driver emits), so the job is inside presign
    await _restart(cluster, 2, delay_s=1.5, delay_protocols=["presign"])
    mark = cluster.events_mark(2)
    ini, req = await _start_request(cluster, key, 0, [0, 2], "kill mid presign")
    await cluster.wait_event(2, "round", since=mark, protocol="presign", round=2)
    assert (await ini.get_sign_request(req["request_id"]))["status"] == "signing"
    await cluster.kill_node(2)
    err = await _expect_failure(ini, req, timeout=3 * ROUND_TIMEOUT + 10)
    print(f"\nkilled mid-presign: {err.status} {err.code} {err.message!r} missing={err.missing_nodes} "
          f"after {err.elapsed:.1f} s")
    assert "node-3" in _named(err)
    assert err.elapsed < 2 * ROUND_TIMEOUT + 5
    # another quorum signs at once; the killed node restarts and signs again
    await _sign_with(cluster, key, 0, [0, 1], "retry without node-3")
    await _restart(cluster, 2)
    await _sign_with(cluster, key, 1, [1, 2], "node-3 rejoined")


async def test_kill_9_in_the_middle_of_sign_never_reuses_a_presignature(cluster):
    key = await _key(cluster)
    # node-1 fills presignature pools (it is the lowest index of {1,3} and {1,2})
    await _restart(cluster, 0, node={"presign_pool": 2})

    async def pool_ready():
        k = await cluster.client("auditor", node=0).get_key(key["key_id"])
        return k.get("presignatures", {}).get("node-1,node-3", 0) >= 2
    await _wait_for(pool_ready, 90, "presignatures for node-1,node-3")
    await _restart(cluster, 2, delay_s=1.5, delay_protocols=["sign"])
    before = {i: _presig_states(cluster, i) for i in (0, 2)}
    mark = cluster.events_mark(2)
    ini, req = await _start_request(cluster, key, 0, [0, 2], "kill mid sign")
    # killed as its partial signature is about to leave (spent durably before that)
    await cluster.wait_event(2, "round", since=mark, protocol="sign", round=2)
    await cluster.kill_node(2)
    err = await _expect_failure(ini, req, timeout=3 * ROUND_TIMEOUT + 10)
    print(f"\nkilled mid-sign: {err.status} {err.code} {err.message!r} missing={err.missing_nodes} "
          f"after {err.elapsed:.1f} s")
    assert "node-3" in _named(err)
    assert err.elapsed < 2 * ROUND_TIMEOUT + 5
    after = {i: _presig_states(cluster, i) for i in (0, 2)}
    used = [pid for pid, st in after[0].items() if st == "spent" and before[0].get(pid) == "available"]
    assert len(used) == 1, "exactly the coordinator's presignature for this request is spent"
    burnt = used[0]
    assert after[2].get(burnt) == "spent", "node-3 spent it durably before its partial signature left"
    # a retry with the other quorum, then node-3 comes back: the burnt one stays burnt
    await _sign_with(cluster, key, 0, [0, 1], "retry after mid-sign kill")
    await _restart(cluster, 2)
    for n in range(3):
        await _sign_with(cluster, key, 0, [0, 2], f"after restart {n}")
        for i in (0, 2):
            states = _presig_states(cluster, i)
            assert states.get(burnt) == "spent", f"presignature came back on node {i}"
    final = {i: _presig_states(cluster, i) for i in (0, 2)}
    for i in (0, 2):  # nothing ever goes from spent back to available
        assert not [p for p, st in final[i].items() if st != "spent" and after[i].get(p) == "spent"]
    await _restart(cluster, 0, node={"presign_pool": 0})


async def test_slow_peer_times_out_cleanly(cluster):
    key = await _key(cluster)
    await _restart(cluster, 1, delay_s=ROUND_TIMEOUT + 3, delay_protocols=["presign", "sign"])
    ini, req = await _start_request(cluster, key, 0, [0, 1], "slow peer")
    err = await _expect_failure(ini, req, timeout=4 * ROUND_TIMEOUT + 20)
    print(f"\nslow peer: {err.status} {err.code} {err.message!r} missing={err.missing_nodes} after {err.elapsed:.1f} s")
    assert err.code in ("round_timeout", "job_timeout") and err.missing_nodes == ["node-2"]
    assert err.elapsed < 2 * ROUND_TIMEOUT + 5
    # the others sign meanwhile; the slow node is still up and answers
    await _sign_with(cluster, key, 2, [0, 2], "while node-2 is slow")
    assert cluster.running(1) and (await _readyz(cluster, 1))[0] == 200
    await _restart(cluster, 1)
    await _sign_with(cluster, key, 0, [0, 1], "node-2 fast again")


async def test_hsm_token_removed_then_restored(cluster):
    key = await _key(cluster)
    tokens = cluster.data_dirs[2] / "hsm" / "tokens"
    away = tokens.with_name("tokens.away")
    tokens.rename(away)
    try:
        async def not_ready():
            st, body = await _readyz(cluster, 2)
            return st == 503
        await _wait_for(not_ready, 20, "node-3 /readyz to turn 503")
        assert (await cluster.client("auditor", node=2).healthz())["status"] == "ok"
        # refused through node-3, and with node-3 as a named signer; the others still sign
        with pytest.raises(ApplianceAPIError) as ei:
            await cluster.client("initiator", node=2).request_signature(key["key_id"], digest_of("no hsm"))
        assert ei.value.status == 503 and ei.value.code == "hsm_unavailable"
        with pytest.raises(ApplianceAPIError) as ei:
            await cluster.client("initiator", node=0).request_signature(
                key["key_id"], digest_of("no hsm 2"), signers=["node-1", "node-3"])
        assert ei.value.status == 503 and "node-3" in _named(ei.value)
        auto = await sign(cluster.client("initiator", node=0), cluster.client("approver", node=0),
                          key["key_id"], digest_of("auto quorum without node-3"))
        assert "node-3" not in auto["signers"]
        assert cluster.running(2)
    finally:
        away.rename(tokens)

    async def ready():
        return (await _readyz(cluster, 2))[0] == 200
    await _wait_for(ready, 30, "node-3 to recover")
    await _sign_with(cluster, key, 2, [1, 2], "token is back")


async def test_wrong_pin_then_fixed(cluster):
    key = await _key(cluster)
    pin_files = list((cluster.data_dirs[2] / "hsm").glob("*.pin"))
    assert len(pin_files) == 1
    pin_file = pin_files[0]
    good = pin_file.read_bytes()
    await cluster.stop_node(2)
    pin_file.write_bytes(b"0000-wrong-pin\n")
    try:
        await _start_not_ready(cluster, 2)
        st, body = await _readyz(cluster, 2)
        assert st == 503
        assert (await cluster.client("auditor", node=2).healthz())["status"] == "ok"
        status, raw = await _raw_readyz(cluster, 2)
        assert "PIN" in raw.get("reason", ""), raw
        with pytest.raises(ApplianceAPIError) as ei:
            await cluster.client("initiator", node=0).request_signature(
                key["key_id"], digest_of("wrong pin"), signers=["node-1", "node-3"])
        assert ei.value.status == 503 and "node-3" in _named(ei.value)
        with pytest.raises(ApplianceAPIError) as ei:
            await cluster.client("initiator", node=2).request_signature(key["key_id"], digest_of("wrong pin 2"))
        assert ei.value.status == 503
        log = cluster.log_tail(2, 20000)
        assert "PIN" in log and good.strip().decode() not in log
    finally:
        pin_file.write_bytes(good)
    await cluster.wait_ready(2, timeout=30)
    await _sign_with(cluster, key, 0, [0, 2], "right pin again")


async def test_corrupted_sealed_share_is_a_clear_error_for_that_key_only(cluster):
    key = await _key(cluster)
    other = await _key(cluster, "other")
    await cluster.stop_node(2)
    db = cluster.data_dirs[2] / "node.db"
    con = sqlite3.connect(str(db))
    try:
        (blob,) = con.execute("SELECT sealed FROM key_secrets WHERE key_id = ? AND kind = 'share' "
                              "ORDER BY epoch DESC LIMIT 1", (key["key_id"],)).fetchone()
        bad = bytearray(blob)
        bad[len(bad) // 2] ^= 0x40
        con.execute("UPDATE key_secrets SET sealed = ? WHERE key_id = ? AND kind = 'share' AND sealed = ?",
                    (bytes(bad), key["key_id"], blob))
        con.commit()
    finally:
        con.close()
    await cluster.start_node(2)
    ini, req = await _start_request(cluster, key, 0, [0, 2], "corrupt share")
    err = await _expect_failure(ini, req, timeout=3 * ROUND_TIMEOUT + 10)
    print(f"\ncorrupt sealed share: {err.status} {err.code} {err.message!r}")
    assert err.code == "sealed_data_corrupt" and "node-3" in err.message
    # nothing else is lost: the other key on node-3, and this key on the other nodes
    await _sign_with(cluster, other, 0, [0, 2], "other key still signs on node-3")
    await _sign_with(cluster, key, 0, [0, 1], "this key still signs elsewhere")
    assert cluster.running(2)
    # the original blob back: node-3 signs this key again
    await cluster.stop_node(2)
    con = sqlite3.connect(str(db))
    con.execute("UPDATE key_secrets SET sealed = ? WHERE key_id = ? AND kind = 'share' AND sealed = ?",
                (blob, key["key_id"], bytes(bad)))
    con.commit()
    con.close()
    await cluster.start_node(2)
    await _sign_with(cluster, key, 1, [1, 2], "share restored")


def _corrupt_a_page(db, page_size: int = 4096) -> int:
    """Overwrite one page of ``db`` (a b-tree page quick_check will notice); returns its number."""
    data = bytearray(db.read_bytes())
    pages = len(data) // page_size
    for pg in range(pages - 1, 1, -1):  # from the end: table and index pages, never the header
        trial = bytearray(data)
        trial[pg * page_size:(pg + 1) * page_size] = bytes([0xA5]) * page_size
        tmp = db.with_name("probe.db")
        tmp.write_bytes(trial)
        try:
            con = sqlite3.connect(str(tmp))
            try:
                ok = con.execute("PRAGMA quick_check").fetchall() == [("ok",)]
            finally:
                con.close()
        except sqlite3.DatabaseError:
            ok = False
        tmp.unlink()
        if not ok:
            db.write_bytes(trial)
            return pg
    raise AssertionError("no page whose corruption quick_check notices")


async def test_corrupted_database_page_is_a_clear_error_and_loses_nothing(cluster):
    key = await _key(cluster)
    other = await _key(cluster, "other")
    await cluster.stop_node(2)
    d = cluster.data_dirs[2]
    db = d / "node.db"
    backup = d / "node.db.backup"
    shutil.copy2(db, backup)
    page = _corrupt_a_page(db)
    try:
        await _start_not_ready(cluster, 2)
        st, body = await _readyz(cluster, 2)
        assert st == 503
        status, raw = await _raw_readyz(cluster, 2)
        print(f"\ncorrupt page {page}: /readyz {status} {raw}")
        assert "corrupt" in raw.get("reason", "") or "unreadable" in raw.get("reason", "")
        with pytest.raises(ApplianceAPIError) as ei:
            await cluster.client("auditor", node=2).list_keys()
        assert ei.value.status == 503 and ei.value.code == "not_ready"
        # the others sign; naming node-3 is refused with its name
        auto = await sign(cluster.client("initiator", node=0), cluster.client("approver", node=0),
                          key["key_id"], digest_of("db corrupt elsewhere"))
        assert "node-3" not in auto["signers"]
        with pytest.raises(ApplianceAPIError) as ei:
            await cluster.client("initiator", node=1).request_signature(
                key["key_id"], digest_of("db corrupt named"), signers=["node-2", "node-3"])
        assert ei.value.status == 503 and "node-3" in _named(ei.value)
    finally:
        await cluster.stop_node(2)
        shutil.copy2(backup, db)
        backup.unlink()
    await cluster.start_node(2)
    keys = {k["key_id"] for k in await cluster.client("auditor", node=2).list_keys()}
    assert {key["key_id"], other["key_id"]} <= keys
    await _sign_with(cluster, key, 2, [1, 2], "db restored")
    await _sign_with(cluster, other, 2, [0, 2], "db restored, other key")


async def _raw_readyz(cluster, i: int) -> tuple[int, dict]:
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=cluster._server_ctx(i))) as s:
        async with s.get(cluster.urls[i] + "/readyz") as r:
            return r.status, await r.json()


async def test_identifiable_abort_quarantines_until_an_admin_clears(cluster):
    key = await _key(cluster)
    await _restart(cluster, 1, tamper=["bad_partial"])
    ini, req = await _start_request(cluster, key, 0, [0, 1], "cheater")
    err = await _expect_failure(ini, req, timeout=3 * ROUND_TIMEOUT + 10)
    print(f"\ncheating signer: {err.status} {err.code} {err.message!r} culprits={err.culprits}")
    assert err.code == "protocol_abort" and err.culprits == ["node-2"]
    admin = cluster.client("admin", node=0)
    q = await admin.quarantined()
    assert [e["node_id"] for e in q] == ["node-2"] and q[0]["reason"]
    metrics = await cluster.client("auditor", node=0).metrics()
    assert 'appliance_node_quarantined{node="node-2"} 1.0' in metrics
    assert 'appliance_node_quarantined{node="node-3"} 0.0' in metrics
    entries = await cluster.client("auditor", node=0).audit()
    assert any("node_quarantined" in json.dumps(e) and "node-2" in json.dumps(e) for e in entries)
    # left out of quorums: an automatic quorum avoids it, naming it is refused
    for n in range(2):
        auto = await sign(ini, cluster.client("approver", node=0), key["key_id"], digest_of(f"avoid {n}"))
        assert "node-2" not in auto["signers"]
    with pytest.raises(ApplianceAPIError) as ei:
        await ini.request_signature(key["key_id"], digest_of("named cheater"), signers=["node-1", "node-2"])
    assert ei.value.status == 409 and ei.value.code == "node_quarantined"
    # it stays quarantined across restarts (of both), until an admin clears it
    await _restart(cluster, 1)
    await _restart(cluster, 0)
    assert [e["node_id"] for e in await admin.quarantined()] == ["node-2"]
    with pytest.raises(ApplianceAPIError) as ei:
        await cluster.client("initiator", node=0).clear_quarantine("node-2")
    assert ei.value.status == 403
    cleared = await admin.clear_quarantine("node-2")
    assert cleared["cleared"] is True
    with pytest.raises(ApplianceAPIError) as ei:
        await admin.clear_quarantine("node-2")
    assert ei.value.status == 404
    assert await admin.quarantined() == []
    metrics = await cluster.client("auditor", node=0).metrics()
    assert 'appliance_node_quarantined{node="node-2"} 0.0' in metrics
    entries = await cluster.client("auditor", node=0).audit()
    assert any("quarantine_cleared" in json.dumps(e) and "node-2" in json.dumps(e) for e in entries)
    await _sign_with(cluster, key, 0, [0, 1], "node-2 cleared")
    # quarantine is per node, in the OpenAPI document
    doc = await admin.openapi()
    assert "/v1/quarantine" in doc["paths"] and "delete" in doc["paths"]["/v1/quarantine/{node_id}"]
