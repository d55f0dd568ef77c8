"""A Node object in this process, with its SQLite store but no HSM and no server: for tests of
node code paths that need neither (the early-frame buffer, the peer pools)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from api.app import make_app
from api.auth import generate_user_key
from appliance.config import ClusterConfig, MetricsConfig, NodeConfig, PeerInfo
from appliance.node import Node
from appliance.storage import NodeStore
from appliance.policy import default_policy
from appliance.tls import make_node_certificate


def bare_node(tmp: Path, *, nodes: int = 3, me: int = 0, urls: list[str] | None = None,
              tls_certs: list[str] | None = None, tls_cert: Path | None = None,
              tls_key: Path | None = None) -> Node:
    users = {u: generate_user_key()[1].decode() for u in ("admin", "initiator", "approver")}
    policy = default_policy("bare", users, roles={"admin": ["admin"], "initiator": ["initiator"],
                                                  "approver": ["approver"]}).canonical()
    urls = urls or [f"https://127.0.0.1:{9000 + i}" for i in range(nodes)]
    if tls_certs is None:  # each node pinned by a real certificate (as cluster.toml has them)
        tls_certs = [make_node_certificate(f"node-{i + 1}", ["127.0.0.1"])[0].decode() for i in range(nodes)]
    peers = tuple(PeerInfo(f"node-{i + 1}", i, urls[i], tls_certs[i], b"\x02" * 33,
                           b"\x04" * 65) for i in range(nodes))
    cfg = NodeConfig(path=tmp / "node.toml", node_id=f"node-{me + 1}", listen_host="127.0.0.1",
                     listen_port=9000 + me, db=tmp / "node.db", tls_cert=tls_cert or tmp / "tls.crt",
                     tls_key=tls_key or tmp / "tls.key", hsm={}, cluster=ClusterConfig("bare", peers),
                     cluster_mapping=policy, metrics=MetricsConfig(auth="none"))
    node = Node(cfg)
    node.store = NodeStore(cfg.db)
    return node


@contextlib.asynccontextmanager
async def bare_app_client(tmp: Path, *, nodes: int = 2) -> AsyncIterator[TestClient]:
    """The node's whole app (:func:`api.app.make_app`) over plain HTTP in aiohttp's test
    server, for a :func:`bare_node` whose HSM counts as open (the auth middleware only checks
    that there is one); the node's store and threads are closed afterwards."""
    node = bare_node(tmp, nodes=nodes)
    node.hsm = object()
    try:
        async with TestClient(TestServer(make_app(node))) as client:
            yield client
    finally:
        node.store.close()
        node.cpu.shutdown(wait=False)
