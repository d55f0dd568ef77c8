"""The HTTPS server's edge limits (issue 12 item 5a), with raw TLS sockets against the node's
app and site as ``api.app.serve`` builds them, the timeouts made short through the node
configuration ([http]). Each check waits for the server to close the connection, bounded by
``asyncio.wait_for``; nothing asserts how long it took."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import ssl

import pytest

from api.edge import GuardedSite, runner_for
from api.app import PEERS_KEY, make_app
from appliance.tls import client_context, make_node_certificate, peer_client_context, server_context, write_private
from appliance.config import ConfigError, HttpLimits
from tests.bare_node import bare_node

BOUND = 20  # seconds any one close may take at most (generous: a loaded machine)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Edge:
    def __init__(self, tmp_path, limits: HttpLimits) -> None:
        self.tmp = tmp_path
        self.limits = limits

    async def __aenter__(self) -> "Edge":
        certs = []
        for i in range(2):
            cert, key = make_node_certificate(f"node-{i + 1}", ["127.0.0.1"])
            (self.tmp / f"n{i}.crt").write_bytes(cert)
            write_private(self.tmp / f"n{i}.key", key)
            certs.append(cert.decode())
        self.certs = certs
        self.port = _free_port()
        self.node = bare_node(self.tmp, nodes=2, urls=[f"https://127.0.0.1:{self.port}", "https://127.0.0.1:1"],
                              tls_certs=certs, tls_cert=self.tmp / "n0.crt", tls_key=self.tmp / "n0.key")
        self.node.config = dataclasses.replace(self.node.config, http=self.limits)
        self.node.hsm = object()  # peer routes only check that there is one; nothing here uses it
        app = make_app(self.node)
        self.runner = runner_for(app, self.limits)
        await self.runner.setup()
        ctx = server_context(self.tmp / "n0.crt", self.tmp / "n0.key", certs)
        self.site = GuardedSite(self.runner, "127.0.0.1", self.port, ssl_context=ctx, limits=self.limits,
                                peer_fingerprints=frozenset(app[PEERS_KEY]))
        await self.site.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.runner.cleanup()
        self.node.store.close()
        self.node.cpu.shutdown(wait=False)
        self.node.fast.shutdown(wait=False)

    async def connect(self, *, as_peer: bool = False):
        ctx: ssl.SSLContext = (peer_client_context(self.tmp / "n1.crt", self.tmp / "n1.key", self.certs[0])
                               if as_peer else client_context(self.certs[0]))
        return await asyncio.open_connection("127.0.0.1", self.port, ssl=ctx, server_hostname="127.0.0.1")


async def _closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (bounded wait)."""
    out = b""
    while True:
        chunk = await asyncio.wait_for(reader.read(65536), BOUND)
        if not chunk:
            return out
        out += chunk


SHORT = HttpLimits(header_timeout_s=0.5, body_timeout_s=0.5, idle_timeout_s=0.5,
                   max_connections_per_client=3, max_connections_per_peer=8)


@pytest.mark.asyncio
async def test_an_idle_tls_connection_is_closed(tmp_path):
    async with Edge(tmp_path, SHORT) as edge:
        reader, writer = await edge.connect()
        assert await _closed_by_server(reader) == b""
        writer.close()


@pytest.mark.asyncio
async def test_headers_sent_slowly_are_cut_off(tmp_path):
    """A header line now and then (each before the idle timeout would matter): the header
    timeout closes the connection, with the request never answered."""
    limits = dataclasses.replace(SHORT, idle_timeout_s=600.0)
    async with Edge(tmp_path, limits) as edge:
        reader, writer = await edge.connect()
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        await writer.drain()
        dripping = asyncio.ensure_future(_drip(writer, b"X-Slow: 1\r\n"))
        try:
            assert await _closed_by_server(reader) == b""
        finally:
            dripping.cancel()
            writer.close()


async def _drip(writer: asyncio.StreamWriter, line: bytes) -> None:
    """The slow client: a line whenever the event loop has nothing better to do; stops when
    the connection is gone."""
    try:
        while not writer.is_closing():
            writer.write(line)
            await writer.drain()
            await asyncio.sleep(0.1)  # the attacker's pace, not a synchronisation
    except (ConnectionError, ssl.SSLError):
        pass


@pytest.mark.asyncio
async def test_a_body_sent_slowly_gets_408_and_the_connection_closes(tmp_path):
    limits = dataclasses.replace(SHORT, idle_timeout_s=600.0, header_timeout_s=600.0)
    async with Edge(tmp_path, limits) as edge:
        reader, writer = await edge.connect(as_peer=True)  # a peer route reads its body
        writer.write(b"POST /v1/peer/jobs/job_0123456789abcdef01234567/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/cbor\r\nContent-Length: 2000000\r\n\r\n")
        await writer.drain()
        dripping = asyncio.ensure_future(_drip(writer, b"\x00"))
        try:
            response = await _closed_by_server(reader)
        finally:
            dripping.cancel()
            writer.close()
        assert response.startswith(b"HTTP/1.1 408"), response[:200]
        assert b'"code":"body_timeout"' in response


@pytest.mark.asyncio
async def test_connections_per_client_are_capped_and_peers_have_their_own_budget(tmp_path):
    limits = dataclasses.replace(SHORT, idle_timeout_s=600.0, header_timeout_s=600.0)
    async with Edge(tmp_path, limits) as edge:
        held = [await edge.connect() for _ in range(3)]
        reader, writer = await edge.connect()  # the 4th from this address: closed at once
        assert await _closed_by_server(reader) == b""
        writer.close()
        # a pinned peer on the same address is counted apart
        peer_reader, peer_writer = await edge.connect(as_peer=True)
        peer_writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert (await _closed_by_server(peer_reader)).startswith(b"HTTP/1.1 200")
        # the held ones still work; once one closes, a new client connection is accepted
        r0, w0 = held[0]
        w0.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert (await _closed_by_server(r0)).startswith(b"HTTP/1.1 200")
        w0.close()
        await w0.wait_closed()
        r, w = await edge.connect()
        w.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert (await _closed_by_server(r)).startswith(b"HTTP/1.1 200")
        for _, wr in held[1:]:
            wr.close()


def test_http_limits_come_from_the_node_configuration():
    assert HttpLimits() == HttpLimits(20.0, 60.0, 60.0, 128, 256, 10.0)  # production defaults
    lim = HttpLimits.from_mapping({"header_timeout_s": 1, "max_connections_per_client": 4, "linger_s": 0.5})
    assert (lim.header_timeout_s, lim.max_connections_per_client, lim.body_timeout_s) == (1.0, 4, 60.0)
    assert lim.linger_s == 0.5
    # typed: a string is not read as a number, and every error names the table and the key
    for bad, message in (
            ({"header_timeout": 1}, "[http] header_timeout: unknown key (did you mean header_timeout_s?)"),
            ({"idle_timeout_s": 0}, "[http] idle_timeout_s: expected float > 0.0, got int 0"),
            ({"max_connections_per_client": "4"},
             '[http] max_connections_per_client: expected int, got str "4"')):
        with pytest.raises(ConfigError) as e:
            HttpLimits.from_mapping(bad)
        assert str(e.value) == message
