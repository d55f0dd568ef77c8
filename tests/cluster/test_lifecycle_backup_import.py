"""Issue 8 over real node processes: a node's disaster-recovery backup (encrypted to its own
recovery key) restored onto a fresh HSM token, tampered backups refused; key import from a known
private key (split offline, each share encrypted to its node's HSM transport key), a share that
does not match the dealer's commitments refused by its node, naming the problem."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys

import coincurve
import pytest

from api.client import ApplianceAPIError
from appliance.backup import BackupError, create_recovery_key, load_recovery_private, open_backup, read_header
from appliance.config import ClusterConfig, load_toml
from appliance.key_import import build_bundle, share_context
from appliance.tss.group import Q
from hsm.transport import encrypt_to
from tests.cluster_fixtures import cluster_fixture, cluster_marks
from tests.lifecycle_helpers import secret_epochs, sign

pytestmark = cluster_marks("lifecycle-backup-import")

cluster = cluster_fixture(node_extra={i: {"node": {"lifecycle_interval_s": 0.5}} for i in range(3)})


def cli(cluster, *args: str) -> subprocess.CompletedProcess:
    """The ``appliance`` command, as an operator runs it."""
    return subprocess.run([sys.executable, "-m", "appliance.cli", *map(str, args)], capture_output=True,
                          text=True, env=cluster._env(), timeout=120)


def client_args(cluster, user: str = "admin", node: int = 0) -> list[str]:
    return ["--url", cluster.urls[node], "--user", user, "--key", str(cluster.base_dir / "users" / f"{user}.pem"),
            "--server-cert", str(cluster.data_dirs[node] / "tls" / "node.crt")]


def flip(data: bytes, at: int) -> bytes:
    b = bytearray(data)
    b[at] ^= 0x01
    return bytes(b)


async def test_backup_restored_onto_a_new_token_signs_and_tampering_is_refused(cluster, tmp_path):
    key = await cluster.client("admin").create_key(threshold=2)
    await sign(cluster, key, "before the backup", signers=["node-1", "node-2"])
    # node-2's recovery key pair, made off the node; its custodian keeps the private half offline
    r = cli(cluster, "recovery-key", "create", "--out", tmp_path / "node-2.recovery.pem")
    assert r.returncode == 0, r.stderr
    pub = tmp_path / "node-2.recovery.pub.pem"
    backup = tmp_path / "node-2.backup"
    r = cli(cluster, "backup", "export", "--config", cluster.data_dirs[1] / "node.toml",
            "--recovery-pub", pub, "--out", backup)
    assert r.returncode == 0, r.stderr
    data = backup.read_bytes()
    header = read_header(data)
    assert header["node_id"] == "node-2" and header["keys"] == [{"key_id": key["key_id"], "epoch": 0}]
    # what the file holds is readable only with the recovery private key
    _, plaintext = open_backup(data, load_recovery_private((tmp_path / "node-2.recovery.pem").read_bytes()))
    share_hex = json.loads(plaintext)["keys"][0]["share"]
    assert bytes.fromhex(share_hex) not in data and share_hex.encode() not in data
    create_recovery_key(tmp_path / "other.pem")
    with pytest.raises(BackupError):
        open_backup(data, load_recovery_private((tmp_path / "other.pem").read_bytes()))
    # disaster: node-2 loses its token and database; a fresh token under the same node id
    await cluster.replace_node(1, start=False)
    assert not (cluster.data_dirs[1] / "node.db").exists()
    # one changed byte anywhere (header, nonce, ciphertext, tag) and the restore is refused
    n = len(data)
    for at in (len(b"APPLIANCE-BACKUP\n") + 8, n - 200, n - 1):
        bad = tmp_path / f"tampered-{at}.backup"
        bad.write_bytes(flip(data, at))
        r = cli(cluster, "backup", "restore", "--config", cluster.data_dirs[1] / "node.toml",
                "--recovery-key", tmp_path / "node-2.recovery.pem", "--in", bad)
        assert r.returncode == 1 and "error:" in r.stderr, (at, r.stdout, r.stderr)
        assert not (cluster.data_dirs[1] / "node.db").exists() or secret_epochs(cluster, 1, key["key_id"]) == set()
    # the genuine file, with the recovery private key, onto the new token
    r = cli(cluster, "backup", "restore", "--config", cluster.data_dirs[1] / "node.toml",
            "--recovery-key", tmp_path / "node-2.recovery.pem", "--in", backup)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [k["key_id"] for k in out["restored"]] == [key["key_id"]]
    await cluster.start_node(1)
    v = await cluster.client("auditor", node=1).get_key(key["key_id"])
    assert (v["public_key"], v["epoch"]) == (key["public_key"], 0)
    await sign(cluster, key, "restored node-2 with node-1", node=1, signers=["node-1", "node-2"])
    await sign(cluster, key, "restored node-2 with node-3", node=2, signers=["node-2", "node-3"])
    # restoring while the node runs is refused (and changes nothing)
    r = cli(cluster, "backup", "restore", "--config", cluster.data_dirs[1] / "node.toml",
            "--recovery-key", tmp_path / "node-2.recovery.pem", "--in", backup)
    assert r.returncode == 1 and "stop the node first" in r.stderr, r.stderr


def _cluster_config(cluster) -> ClusterConfig:
    return ClusterConfig.from_mapping(load_toml(cluster.data_dirs[0] / "cluster.toml"))


async def test_import_a_known_private_key(cluster, tmp_path):
    d = int.from_bytes(hashlib.sha256(b"issue 8: a wallet key moving in").digest(), "big") % Q
    public = coincurve.PrivateKey(d.to_bytes(32, "big")).public_key.format().hex()
    key_file = tmp_path / "wallet.key"
    key_file.write_text(f"0x{d:064x}\n")
    bundle_file = tmp_path / "bundle.json"
    # offline: split and encrypt each share to its node's HSM transport key
    r = cli(cluster, "key", "import", "--private-key", key_file, "--cluster", cluster.data_dirs[0] / "cluster.toml",
            "--threshold", "2", "--out", bundle_file)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["public_key"] == public
    bundle = json.loads(bundle_file.read_text())
    assert bundle["public_key"] == public and set(bundle["shares"]) == {"node-1", "node-2", "node-3"}
    assert f"{d:064x}" not in bundle_file.read_text()
    res = await cluster.client("admin", node=2).import_key(bundle)
    assert res["public_key"] == public and res["epoch"] == 0 and "refresh" in res["recommendation"]
    key = {"key_id": res["key_id"], "public_key": public}
    for i in range(3):
        v = await cluster.client("auditor", node=i).get_key(key["key_id"])
        assert (v["public_key"], v["threshold"], v["status"]) == (public, 2, "active")
    await sign(cluster, key, "imported key", signers=["node-1", "node-3"])
    # the recommended refresh: new shares, the same (imported) public key
    op = await cluster.client("admin").refresh(key["key_id"], timeout=120)
    assert op["result"]["public_key"] == public and op["result"]["epoch"] == 1
    await sign(cluster, key, "imported key, refreshed", node=1, signers=["node-2", "node-3"])
    # the same key again is refused: it is held already
    with pytest.raises(ApplianceAPIError) as ei:
        await cluster.client("admin").import_key(bundle)
    assert (ei.value.status, ei.value.code) == (409, "key_exists")


async def test_import_with_refresh_from_the_cli(cluster, tmp_path):
    cfg = _cluster_config(cluster)
    d = int.from_bytes(hashlib.sha256(b"issue 8: second wallet key").digest(), "big") % Q
    public = coincurve.PrivateKey(d.to_bytes(32, "big")).public_key.format().hex()
    bundle_file = tmp_path / "bundle.json"
    bundle_file.write_text(json.dumps(build_bundle(d, cfg, 2, ["node-1", "node-2"]).to_json()))
    r = cli(cluster, "key", "submit-import", *client_args(cluster, node=1), "--bundle", bundle_file, "--refresh")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["public_key"] == public and res["refreshed"] is True and res["epoch"] == 1
    await sign(cluster, {"key_id": res["key_id"], "public_key": public}, "2-of-2 import", node=0)


async def test_a_share_that_does_not_match_the_commitments_is_refused_by_its_node(cluster):
    cfg = _cluster_config(cluster)
    d = int.from_bytes(hashlib.sha256(b"issue 8: a bad dealer").digest(), "big") % Q
    good = build_bundle(d, cfg, 2)
    node2 = cfg.node("node-2")
    wrong = (int.from_bytes(hashlib.sha256(b"not the share").digest(), "big") % Q).to_bytes(32, "big")
    bad = dataclasses.replace(good, envelopes={**good.envelopes, "node-2": encrypt_to(
        node2.transport_key, wrong, context=share_context(good.import_id, "node-2"))}).to_json()
    before = {k["key_id"] for k in await cluster.client("admin").list_keys()}
    # via another node: node-2 refuses the job, naming the problem
    with pytest.raises(ApplianceAPIError) as ei:
        await cluster.client("admin", node=0).import_key(bad)
    assert ei.value.code == "import_share_rejected", ei.value
    assert "node-2" in ei.value.message and "does not match the dealer's commitments" in ei.value.message
    # to node-2 itself: refused at once
    with pytest.raises(ApplianceAPIError) as ei:
        await cluster.client("admin", node=1).import_key(bad)
    assert (ei.value.status, ei.value.code) == (422, "import_share_rejected")
    # a share encrypted to another node's transport key does not even decrypt
    swapped = dataclasses.replace(good, envelopes={**good.envelopes, "node-3": good.envelopes["node-1"]}).to_json()
    with pytest.raises(ApplianceAPIError) as ei:
        await cluster.client("admin", node=2).import_key(swapped)
    assert (ei.value.status, ei.value.code) == (422, "import_share_unreadable")
    # a malformed bundle is a clear 400
    with pytest.raises(ApplianceAPIError) as ei:
        await cluster.client("admin").import_key({**good.to_json(), "commitments": good.to_json()["commitments"][:1]})
    assert (ei.value.status, ei.value.code) == (400, "bad_import_bundle")
    # nothing was created on any node
    for i in range(3):
        assert {k["key_id"] for k in await cluster.client("admin", node=i).list_keys()} <= before


async def test_bip32_derivation_of_an_imported_wallet_matches_the_bip32_package(cluster):
    """A wallet's master key (BIP32 test vector 1) imported with its chain code: our child
    public keys and xpubs equal those of the `bip32` package, computed from our xpub and from
    the wallet itself, and signatures for derived paths verify under the child keys."""
    from bip32 import BIP32

    wallet = BIP32.from_seed(bytes.fromhex("000102030405060708090a0b0c0d0e0f"))
    d = int.from_bytes(wallet.get_privkey_from_path("m"), "big")
    bundle = build_bundle(d, _cluster_config(cluster), 2, chain_code=wallet.chaincode).to_json()
    res = await cluster.client("admin", node=1).import_key(bundle)
    key = {"key_id": res["key_id"], "public_key": res["public_key"]}
    c = cluster.client("auditor", node=2)
    root = await c.derive(key["key_id"], "m")
    assert root["xpub"] == wallet.get_xpub_from_path("m")
    ref = BIP32.from_xpub(root["xpub"])
    for path in ("m/0", "m/0/1", "m/1/2/3", "m/44/0/0/0/5", "m/2147483647/7"):
        got = await c.derive(key["key_id"], path)
        assert got["public_key"] == ref.get_pubkey_from_path(path).hex() == wallet.get_pubkey_from_path(path).hex()
        assert got["xpub"] == ref.get_xpub_from_path(path) == wallet.get_xpub_from_path(path)
    for path, node in (("m/0/1", 0), ("m/44/0/0/0/5", 2)):
        child = ref.get_pubkey_from_path(path).hex()
        await sign(cluster, key, f"derived {path}", node=node, derivation_path=path, public_key=child)
    with pytest.raises(ApplianceAPIError) as ei:
        await c.derive(key["key_id"], "m/0'/1")
    assert (ei.value.status, ei.value.code) == (400, "bad_derivation_path")


# -- progress of a key operation (issue 15 item 9) --------------------------------------------

KEYGEN_PHASES = ["keygen", "primes", "aux_keys", "aux", "parties", "commit"]


async def test_create_key_reports_its_progress_in_order(cluster):
    """``create_key(on_progress=...)`` sees the operation's phases in order (as far as a
    long-poll catches them; the finished ones with their durations), rounds never going back,
    each phase left complete, and the keygen's rounds ending at done == total."""
    seen: list[dict] = []
    key = await cluster.client("admin").create_key(threshold=2, on_progress=seen.append)
    assert key["public_key"] and seen
    final = seen[-1]
    assert final["phase"] == "commit" and final["done"] == final["total"] == 1
    assert [c["phase"] for c in final["completed"]] == KEYGEN_PHASES[:-1]
    for c in final["completed"]:
        assert c["done"] == c["total"] and c["ms"] >= 0, c
    keygen = next(c for c in final["completed"] if c["phase"] == "keygen")
    assert keygen["total"] == 3  # KeygenParty's rounds (appliance/tss/keygen.py)
    order = [KEYGEN_PHASES.index(p["phase"]) for p in seen]
    assert order == sorted(order), [p["phase"] for p in seen]
    for a, b in zip(seen, seen[1:]):
        assert 0 <= a["done"] <= a["total"]
        if a["phase"] == b["phase"]:
            assert a["done"] <= b["done"], (a, b)


async def test_key_create_from_the_cli_prints_plain_progress_lines_on_stderr(cluster):
    """Without a terminal, ``appliance key create --json`` writes one plain line per change of
    the operation's progress to stderr and only the JSON result to stdout."""
    r = cli(cluster, "key", "create", "--threshold", "2", "--json", *client_args(cluster))
    assert r.returncode == 0, r.stderr
    key = json.loads(r.stdout)
    assert key["public_key"] and key["key_id"]
    lines = r.stderr.splitlines()
    assert "\r" not in r.stderr and lines
    assert "keygen round 3/3 done in " in r.stderr, r.stderr
    assert any(ln.startswith("aux round 3/3 done in ") for ln in lines), r.stderr
    assert lines[-1] == "commit 1/1", r.stderr
