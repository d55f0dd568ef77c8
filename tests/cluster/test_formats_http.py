"""Key and signature formats over HTTPS on a real 2-of-3 cluster (issue 15 item 5): a key's
SPKI PEM loads in the openssl command and verifies the DER signature there (`openssl pkeyutl
-verify`), r||s||v recovers the key's Ethereum address in eth-account, the compact ES256K JWS
the client library makes verifies in PyJWT, and /v1/verify takes the message, rsv and jws.
(Every answer is also checked against /openapi.json by the cluster's clients.) On the same
cluster, the light client distribution alone in a fresh venv signs with its sync client (issue
15 item 11)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import subprocess

import coincurve
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from eth_account import Account
from eth_keys import keys as eth_keys

from api.client import ApplianceAPIError
from tests.cluster_fixtures import check_signature, cluster_fixture, cluster_marks
from tests.packaging.client_dist import ROOT, shared_client_venv

pytestmark = cluster_marks("formats")

cluster = cluster_fixture()


def _openssl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *args], capture_output=True, text=True)


async def test_every_format_of_a_key_and_a_signature_verifies_independently(cluster, tmp_path):
    admin, initiator, approver = (cluster.client(u) for u in ("admin", "initiator", "approver"))
    created = await admin.create_key(threshold=2)
    key = await initiator.get_key(created["key_id"])
    pk = bytes.fromhex(key["public_key"])
    uncompressed = coincurve.PublicKey(pk).format(compressed=False)
    assert key["public_key_uncompressed"] == uncompressed.hex()
    spki = serialization.load_der_public_key(base64.b64decode(key["public_key_spki_der"]))
    assert spki.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint) == pk
    assert key["addresses"]["eth"] == eth_keys.PublicKey(uncompressed[1:]).to_checksum_address()
    assert key["addresses"]["network"] == "mainnet" and key["addresses"]["p2wpkh"].startswith("bc1q")
    listed = {k["key_id"]: k for k in await initiator.list_keys()}
    assert listed[key["key_id"]]["public_key_pem"] == key["public_key_pem"]
    derived = await initiator.derive(key["key_id"], "m/0/1")
    assert serialization.load_pem_public_key(derived["public_key_pem"].encode()).public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint).hex() == derived["public_key"]

    pem = tmp_path / "key.pem"
    pem.write_text(key["public_key_pem"])
    assert _openssl("pkey", "-pubin", "-in", str(pem), "-noout").returncode == 0

    # a compact JWS: the node signed SHA-256 of the ASCII signing input
    done = await initiator.sign_jws(key["key_id"], b'{"sub":"formats"}', {"typ": "JWT"}, approver=approver)
    token = done["jws"]
    assert jwt.decode(token, key["public_key_pem"], algorithms=["ES256K"]) == {"sub": "formats"}
    signing_input = token.rsplit(".", 1)[0]
    digest = hashlib.sha256(signing_input.encode()).digest()
    assert done["status"] == "signed" and done["digest"] == digest.hex()
    sig = done["signature"]
    check_signature(key["public_key"], digest, sig)

    # DER in openssl pkeyutl, with the PEM the node served
    (tmp_path / "digest.bin").write_bytes(digest)
    (tmp_path / "sig.der").write_bytes(bytes.fromhex(sig["der"]))
    out = _openssl("pkeyutl", "-verify", "-pubin", "-inkey", str(pem), "-in", str(tmp_path / "digest.bin"),
                   "-sigfile", str(tmp_path / "sig.der"))
    assert out.returncode == 0 and "Signature Verified Successfully" in out.stdout, out

    # r || s || v: ecrecover (eth-account) gives the key's Ethereum address
    rsv = bytes.fromhex(sig["rsv"])
    assert rsv[64] == 27 + sig["recovery_id"]
    assert Account._recover_hash(digest, signature=rsv) == key["addresses"]["eth"]

    # /v1/verify: the message itself, in each signature form
    for form in ({"rsv": sig["rsv"]}, {"jws": sig["jws"]}, {"r": sig["r"], "s": sig["s"]}, sig["der"]):
        res = await initiator.verify_result(None, form, key_id=key["key_id"], message=signing_input.encode())
        assert res == {"valid": True, "low_s": True, "digest": digest.hex()}
    assert not await initiator.verify(None, sig, key_id=key["key_id"], message=b"another message")
    with pytest.raises(ApplianceAPIError) as exc:
        await initiator.verify(digest, sig, key_id=key["key_id"], message=signing_input.encode())
    assert (exc.value.status, exc.value.code) == (400, "digest_or_message")


async def test_the_light_client_alone_in_a_fresh_venv_signs_with_its_sync_client(cluster, tmp_path,
                                                                              tmp_path_factory):
    _, python = await asyncio.to_thread(shared_client_venv, tmp_path_factory)
    keys = {}
    for user in ("admin", "initiator", "approver"):
        keys[user] = str(tmp_path / f"{user}.pem")
        (tmp_path / f"{user}.pem").write_bytes(cluster.user_keys[user])
    cfg = tmp_path / "client.json"
    cfg.write_text(json.dumps({"url": cluster.urls[0], "server_cert": cluster.server_cert(0), "keys": keys}))
    script = ROOT / "tests" / "packaging" / "sync_client_script.py"
    proc = await asyncio.create_subprocess_exec(str(python), "-I", str(script), str(cfg), cwd=str(tmp_path),
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()[-3000:]
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert result["client_file"].startswith(str(python.parent.parent))  # the wheel's copy, not the repo's
    assert result["absent"] == {m: True for m in ("gmpy2", "pkcs11", "coincurve", "msgspec", "appliance", "api",
                                                   "hsm")}
    assert result["status"] == "signed" and result["key_listed"]
    assert result["unknown_key"] == [404, "not_found", "unknown key"]
