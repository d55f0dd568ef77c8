"""Forwarded reads have their own bounded connection pool (issue 12 item 5d): 140 long-polls
forwarded to a peer no longer starve the pool the protocol needs to reach it."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiohttp import web

from appliance.tls import make_node_certificate, server_context, write_private
from appliance.ids import peer_path
from appliance.transport import POOL_LIMITS
from tests.bare_node import bare_node


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.asyncio
async def test_protocol_traffic_gets_through_while_forwarded_long_polls_wait(tmp_path):
    certs = []
    for i in range(2):
        cert, key = make_node_certificate(f"node-{i + 1}", ["127.0.0.1"])
        (tmp_path / f"n{i}.crt").write_bytes(cert)
        write_private(tmp_path / f"n{i}.key", key)
        certs.append(cert.decode())
    port = _free_port()
    release = asyncio.Event()
    saturated = asyncio.Event()
    polls_in = [0]

    async def long_poll(request: web.Request) -> web.Response:  # the owner holds each one
        polls_in[0] += 1
        if polls_in[0] >= POOL_LIMITS["forward"]:
            saturated.set()
        await release.wait()
        return web.json_response({"request_id": request.match_info["rid"], "status": "pending"})

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"node_id": "node-2", "ready": True})

    app = web.Application()
    app.router.add_get("/v1/peer/sign-requests/{rid}", long_poll)
    app.router.add_get("/v1/peer/health", health)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=server_context(
        tmp_path / "n1.crt", tmp_path / "n1.key", certs))
    await site.start()
    node = bare_node(tmp_path, nodes=2, urls=["https://127.0.0.1:1", f"https://127.0.0.1:{port}"],
                     tls_certs=certs, tls_cert=tmp_path / "n0.crt", tls_key=tmp_path / "n0.key")
    try:
        rids = [f"req_{i:032x}" for i in range(140)]
        for i, rid in enumerate(rids):  # each kept by node-2, as the claims record it
            node.store.claim_request(rid, "initiator", f"n{i}", "content", 1)
        polls = [asyncio.ensure_future(node.signing._forward_to_owner(rid, "GET", query={"wait": 60}))
                 for rid in rids]
        # the owner sees the forwarding pool's worth of them, the rest wait for a connection
        await asyncio.wait_for(saturated.wait(), 20)
        # the protocol still reaches the peer (old code: all 64 connections held by long-polls)
        health = await asyncio.wait_for(node.client.request(node.peers[1], "GET", peer_path("health")), 20)
        assert health["node_id"] == "node-2"
        assert polls_in[0] == POOL_LIMITS["forward"]
        release.set()
        done = await asyncio.wait_for(asyncio.gather(*polls, return_exceptions=True), 60)
        # every long-poll got its answer through; this owner's bare answers carry no signed
        # request, so the forwarding node refuses each (appliance/signing/forwarded.py)
        assert {(type(d).__name__, getattr(d, "code", None)) for d in done} == {("ServiceError", "peer_view_invalid")}
        assert {d.message for d in done} == {
            "the owner's answer for the request is refused: no well-formed signed request"}
    finally:
        release.set()
        await node.client.close()
        node.store.close()
        node.cpu.shutdown(wait=False)
        node.fast.shutdown(wait=False)
        await runner.cleanup()
