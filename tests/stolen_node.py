"""A stolen node identity: what an attacker holding one node's TLS key, HSM token and PIN can
send to the other nodes (the node itself is stopped, as after a theft of its disk)."""

from __future__ import annotations

import contextlib
from typing import Any, AsyncIterator

import aiohttp

from appliance.config import load_node_config
from appliance.job_authority import COORDINATOR_SIG, as_wire, job_digest


class StolenNode:
    def __init__(self, cluster, index: int, hsm) -> None:
        self.cluster = cluster
        self.index = index
        self.hsm = hsm

    def sign_job(self, spec: dict[str, Any]) -> dict[str, Any]:
        """``spec`` signed with the stolen HSM identity key, as its coordinator would."""
        spec = as_wire({k: v for k, v in spec.items() if k != COORDINATOR_SIG})
        spec[COORDINATOR_SIG] = self.hsm.sign_digest(job_digest(spec)).hex()
        return spec

    async def post(self, to: int, path: str, body: dict) -> tuple[int, dict]:
        """POST ``body`` to node ``to`` with the stolen node's pinned TLS identity."""
        ctx = self.cluster.peer_ssl_context(self.index, to)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
            async with s.post(self.cluster.urls[to] + path, json=body) as r:
                return r.status, await r.json()


@contextlib.asynccontextmanager
async def stolen_node(cluster, index: int) -> AsyncIterator[StolenNode]:
    """Stop node ``index``, open its token with its PIN, yield a :class:`StolenNode`; close the
    token and start the node again afterwards."""
    from hsm import HSM

    await cluster.stop_node(index)
    cfg = load_node_config(cluster.data_dirs[index] / "node.toml")
    hsm = HSM.open(cfg.hsm_config(), node_id=cfg.node_id, create_keys=False)
    try:
        yield StolenNode(cluster, index, hsm)
    finally:
        hsm.close()
        await cluster.start_node(index)
