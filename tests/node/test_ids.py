"""Ids against their exact grammar; URL paths from encoded segments; no id pasted into a URL
anywhere in the service code (issue 12, finding 2); single-use reservations in the store
(finding 7)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from appliance.config import ConfigError, PeerInfo
from appliance.ids import BadId, check_id, is_id, new_id, peer_path, url_path
from appliance.storage import NodeStore
from appliance.transport import PeerClient

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("kind", ["key_id", "op_id", "job_id"])
def test_grammars_accept_what_the_appliance_makes(kind):
    good = new_id(kind)
    assert check_id(kind, good) == good
    assert check_id("request_id", "req_" + "a" * 32) and check_id("node_id", "node-1")


@pytest.mark.parametrize("kind,bad", [
    ("request_id", "req_/../../health"), ("request_id", "req_" + "a" * 31), ("request_id", "req_" + "A" * 32),
    ("request_id", "req_" + "a" * 32 + "?x"), ("request_id", "req_" + "a" * 32 + "\n"),
    ("key_id", "key_unknown"), ("op_id", "op_" + "0" * 23), ("job_id", "job_%2F"), ("node_id", "../node"),
    ("node_id", ""), ("key_id", None), ("key_id", 7)])
def test_grammars_refuse_everything_else(kind, bad):
    assert not is_id(kind, bad)
    with pytest.raises(BadId) as ei:
        check_id(kind, bad)
    assert ei.value.code == "bad_id" and ei.value.kind == kind


def test_url_path_keeps_each_segment_whole():
    assert str(peer_path("sign-requests", "req_/../../health?x#y%")) == \
        "/v1/peer/sign-requests/req_%2F..%2F..%2Fhealth%3Fx%23y%25"
    assert str(url_path("v1", "keys", "key_1", "derive")) == "/v1/keys/key_1/derive"
    for bad in ("", ".", ".."):
        with pytest.raises(ValueError):
            url_path("v1", bad)


def test_peer_client_refuses_a_pasted_path():
    client = PeerClient.__new__(PeerClient)
    peer = PeerInfo("node-2", 2, "https://127.0.0.1:1", "", b"", b"")
    with pytest.raises(TypeError):
        asyncio.run(client.request(peer, "GET", "/v1/peer/health"))


G_SECP256K1 = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"  # generators
G_P256 = ("046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"
          "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5")


def test_node_ids_in_the_cluster_configuration_follow_the_grammar():
    from appliance.config import ClusterConfig

    node = {"index": 1, "url": "https://h:1", "tls_cert": "x", "identity_key": G_SECP256K1,
            "transport_key": G_P256}
    with pytest.raises(ConfigError) as e:
        ClusterConfig.from_mapping({"nodes": [dict(node, id="node/1")]}, source="cluster.toml")
    assert str(e.value) == ("cluster.toml: [[nodes]] #1 id: expected str matching regex "
                            "'^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$', got str \"node/1\"")


def test_no_service_code_pastes_a_value_into_a_url():
    """Every URL to a peer or a node is built by url_path/peer_path: no f-string or
    concatenation builds a /v1/ path with a value in it."""
    pasted = re.compile(r"""f["']/v1/[^"']*\{|["']/v1/[^"']*["']\s*\+|\+\s*["']/v1/""")
    offenders = []
    for d in ("appliance", "api"):
        for f in (ROOT / d).rglob("*.py"):
            for n, line in enumerate(f.read_text().splitlines(), 1):
                if pasted.search(line):
                    offenders.append(f"{f.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offenders == []


def test_a_request_is_reserved_for_one_signer_set_and_counted_once(tmp_path):
    store = NodeStore(tmp_path / "node.db")
    try:
        rid, kid = "req_" + "1" * 32, new_id("key_id")
        assert store.mark_request(rid, kid, [2, 1])
        assert store.mark_request(rid, kid, [1, 2])  # the same set again: fine
        assert not store.mark_request(rid, kid, [1, 3])  # another set: refused
        assert not store.mark_request(rid, new_id("key_id"), [1, 2])  # another key: refused
        assert store.use_request(rid, "sign", kid, new_id("job_id"))
        assert store.signatures_since(kid, 0) == 1  # reserved and signed: counted once
    finally:
        store.close()
    again = NodeStore(tmp_path / "node.db")  # durable: a restart keeps the reservation
    try:
        assert not again.mark_request(rid, kid, [1, 3])
    finally:
        again.close()
