"""TLS you can operate, on a real 3-node cluster: node-2's certificate is rotated to one issued
by an operator CA (staged on node-2 with `appliance tls stage --tls-cert/--tls-key`, announced
once with `appliance cluster rotate-cert` signed by the policy_change quorum of two admins);
peers keep signing with it, the old certificate is refused as a peer (403 peer_not_pinned),
forged, under-quorum, replayed and unstaged updates change nothing, a client trusting the
operator CA (`--ca-file`) talks to node-2, and restarts keep the new pin."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import aiohttp
import pytest

from api.client import ApplianceAPIError, ApplianceClient
from appliance.policy import CertUpdate
from appliance.tls import fingerprint_pem, make_node_certificate, peer_client_context
from tests.cluster_fixtures import check_signature, cluster_fixture, cluster_marks, digest_of
from tests.tls_ca import TestCA

pytestmark = cluster_marks("tls_rotation")

cluster = cluster_fixture(users={"admin2": ["admin"]}, policy={"policy_change": {"quorum": 2}})

ROTATED = 1  # node-2


async def _refused(coro, status: int, code: str, message: str | None = None) -> None:
    with pytest.raises(ApplianceAPIError) as ei:
        await coro
    assert (ei.value.status, ei.value.code) == (status, code), ei.value
    if message is not None:
        assert ei.value.message == message


async def _peer_health(cluster, cert_file, key_file, to: int) -> tuple[int, dict]:
    """node-2 calling node ``to`` as a peer, presenting ``cert_file``."""
    ctx = peer_client_context(cert_file, key_file, cluster.server_cert(to))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
        async with s.get(cluster.urls[to] + "/v1/peer/health") as r:
            return r.status, await r.json()


async def _sign(cluster, key, text: str) -> None:
    ini = cluster.client("initiator")
    req = await ini.request_signature(key["key_id"], digest_of(text), signers=["node-2", "node-3"])
    await cluster.client("approver").approve(req["request_id"])
    done = await ini.wait_signature(req["request_id"], timeout=120)
    assert sorted(done["signers"]) == ["node-2", "node-3"]
    check_signature(key["public_key"], digest_of(text), done["signature"])


def _cli(cluster, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(cluster._env()["PYTHONPATH"]))
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], capture_output=True, text=True,
                          env=env, timeout=60)


async def _versions(cluster) -> list[int]:
    return [(await cluster.client("auditor", node=i).tls_certs())["version"] for i in range(cluster.n)]


async def test_rotate_a_node_certificate_to_an_operator_ca_leaf(cluster, tmp_path):
    key = await cluster.client("admin").create_key(threshold=2)
    await _sign(cluster, key, "before the rotation")
    d2 = cluster.data_dirs[ROTATED]
    old_crt, old_key = tmp_path / "old.crt", tmp_path / "old.key"
    old_crt.write_bytes((d2 / "tls" / "node.crt").read_bytes())
    old_key.write_bytes((d2 / "tls" / "node.key").read_bytes())
    assert (await _peer_health(cluster, old_crt, old_key, 0))[0] == 200  # pinned today

    # node-2 stages its next certificate, issued by the operator's CA
    ca = TestCA()
    cert, ckey = ca.issue("node-2", ["127.0.0.1", "localhost"])
    (tmp_path / "ca.pem").write_bytes(ca.pem)
    (tmp_path / "n2.crt").write_bytes(cert)
    (tmp_path / "n2.key").write_bytes(ckey)
    staged = _cli(cluster, "tls", "stage", "--config", str(d2 / "node.toml"), "--tls-cert", str(tmp_path / "n2.crt"),
                  "--tls-key", str(tmp_path / "n2.key"))
    assert staged.returncode == 0, staged.stderr
    staged = json.loads(staged.stdout)
    new_fp = staged["tls_cert_sha256"]
    assert staged["tls_cert"] == cert.decode() and new_fp == fingerprint_pem(cert)

    admin = cluster.client("admin")  # talks to node-1: it hands the update to node-2 first
    upd = await admin.cert_update("node-2", cert.decode())
    keys = cluster.user_keys
    # under quorum, forged, a non-admin: refused with their codes, nothing applied anywhere
    await _refused(admin.rotate_tls_cert(upd.signed_by("admin", keys["admin"]).to_json()), 403, "missing_quorum",
                   "1 of the 2 admin signatures the current policy asks for")
    other = CertUpdate(**{**upd.__dict__, "tls_cert": make_node_certificate("node-2", ["127.0.0.1"])[0].decode()})
    forged = upd.signed_by("admin", keys["admin"])
    forged = CertUpdate(**{**forged.__dict__, "signatures": (forged.signatures[0],
                                                            other.signed_by("admin2", keys["admin2"]).signatures[0])})
    await _refused(admin.rotate_tls_cert(forged.to_json()), 403, "bad_signature", "admin2's signature does not verify")
    stale = CertUpdate(**{**upd.__dict__, "version": 2}).signed_by("admin", keys["admin"]).signed_by("admin2",
                                                                                                  keys["admin2"])
    await _refused(admin.rotate_tls_cert(stale.to_json()), 403, "stale_cert_update",
                   "the certificate update's version (2) must be the next one (1)")
    # node-3 has no key staged for this certificate: node-3 refuses it, so nobody applies it
    n3 = await admin.cert_update("node-3", cert.decode())
    n3 = n3.signed_by("admin", keys["admin"]).signed_by("admin2", keys["admin2"])
    await _refused(admin.rotate_tls_cert(n3.to_json()), 409, "tls_key_not_staged")
    assert await _versions(cluster) == [0, 0, 0]

    # the rotation, through the CLI, signed by both admins
    users = cluster.base_dir / "users"
    (users / "admin2.pem").write_bytes(keys["admin2"])
    (tmp_path / "n1.crt").write_text(cluster.server_cert(0))
    out = _cli(cluster, "cluster", "rotate-cert", "--url", cluster.urls[0], "--user", "admin",
               "--key", str(users / "admin.pem"), "--server-cert", str(tmp_path / "n1.crt"),
               "--node-id", "node-2", "--cert", staged["cert_file"],
               "--sign", f"admin:{users / 'admin.pem'}", "--sign", f"admin2:{users / 'admin2.pem'}")
    assert out.returncode == 0, out.stderr
    out = json.loads(out.stdout)
    assert out == {"version": 1, "node_id": "node-2", "tls_cert_sha256": new_fp, "applied": True,
                   "nodes": {"node-1": "applied", "node-2": "applied", "node-3": "applied"}}
    assert await _versions(cluster) == [1, 1, 1]
    for i in range(cluster.n):
        view = await cluster.client("auditor", node=i).tls_certs()
        assert view["nodes"][ROTATED]["tls_cert_sha256"] == new_fp
        entries = await cluster.client("auditor", node=i).audit()
        assert any(e["action"] == "tls_cert_change" and e["decision"] == "applied" and e["subject"] == "node-2"
                   and e["digest"] == new_fp for e in entries)
    assert fingerprint_pem((d2 / "tls" / "node.crt").read_bytes()) == new_fp  # node-2 serves it
    # the same update again changes nothing
    again = upd.signed_by("admin", keys["admin"]).signed_by("admin2", keys["admin2"])
    assert (await admin.rotate_tls_cert(again.to_json()))["applied"] is False

    # the old certificate is no peer any more; the new one is, and node-2 signs with it
    assert await _peer_health(cluster, old_crt, old_key, 0) == (
        403, {"error": {"code": "peer_not_pinned", "message": "peer routes need a pinned node certificate"}})
    assert (await _peer_health(cluster, d2 / "tls" / "node.crt", d2 / "tls" / "node.key", 0))[0] == 200
    await _sign(cluster, key, "after the rotation")

    # a client trusting the operator's CA (host name checked) talks to node-2
    async with ApplianceClient(cluster.urls[ROTATED], "auditor", keys["auditor"], ca_file=tmp_path / "ca.pem") as c:
        assert (await c.tls_certs())["version"] == 1
    out = _cli(cluster, "cluster", "tls-certs", "--url", cluster.urls[ROTATED], "--user", "auditor",
               "--key", str(users / "auditor.pem"), "--ca-file", str(tmp_path / "ca.pem"))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["nodes"][ROTATED]["tls_cert_sha256"] == new_fp
    bad = _cli(cluster, "cluster", "tls-certs", "--url", cluster.urls[0], "--user", "auditor",
               "--key", str(users / "auditor.pem"), "--ca-file", str(tmp_path / "ca.pem"))
    # node-1's is not the CA's: an authentication failure (3), not "unreachable"
    assert (bad.returncode, bad.stderr.split(": ", 2)[:2]) == (3, ["error", "server_certificate_rejected"]), \
        bad.stderr

    # restarts keep the new pin (from the node's database; cluster.toml is untouched)
    await asyncio.gather(cluster.stop_node(0), cluster.stop_node(ROTATED))
    await asyncio.gather(cluster.start_node(0), cluster.start_node(ROTATED))
    assert await _versions(cluster) == [1, 1, 1]
    assert (await _peer_health(cluster, d2 / "tls" / "node.crt", d2 / "tls" / "node.key", 0))[0] == 200
    await _sign(cluster, key, "after the restart")
