"""The HTTP server's edge limits: header, body and idle timeouts, connections per client.

aiohttp's server closes an idle keep-alive connection (``keepalive_timeout``, here the idle
timeout) but has no read timeouts: a client sending a header line every 20 s, or a 2 MB body
a byte at a time, held its connection (and the memory behind it) for as long as it liked.

* header timeout: from the first byte of a request until its headers are complete
  (also the TLS handshake timeout);
* body timeout: from the headers until the body is complete (the read fails with
  :class:`BodyTimeout`, answered 408 ``body_timeout``, and the connection is closed);
* idle timeout: a connection with no request in progress (from its start, too);
* connections per client: per source IP; a pinned peer node (its TLS certificate) counts
  under its own larger budget, so clients sharing an address with a node cannot starve it.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from appliance.config import HttpLimits
from appliance.tls import fingerprint_der

PROTOCOL_KEY = "edge_protocol"


class BodyTimeout(Exception):
    """The request body did not arrive within the body timeout."""


class ConnectionCounter:
    def __init__(self) -> None:
        self.open: dict[str, int] = {}

    def acquire(self, key: str, cap: int) -> bool:
        n = self.open.get(key, 0)
        if n >= cap:
            return False
        self.open[key] = n + 1
        return True

    def release(self, key: str) -> None:
        n = self.open.get(key, 0) - 1
        if n > 0:
            self.open[key] = n
        else:
            self.open.pop(key, None)


class GuardedRequestHandler(RequestHandler):
    """aiohttp's connection protocol with a header timeout and a connection cap."""

    def __init__(self, manager: Any, *, limits: HttpLimits, counter: ConnectionCounter,
                 peer_fingerprints: frozenset[str], **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._limits = limits
        self._counter = counter
        self._peer_fps = peer_fingerprints
        self._client_key: str | None = None
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        key, cap = self._client(transport)
        if not self._counter.acquire(key, cap):
            transport.close()  # over the cap: refused before any request is read
            return
        self._client_key = key
        super().connection_made(transport)

    def _client(self, transport: asyncio.BaseTransport) -> tuple[str, int]:
        ssl_obj = transport.get_extra_info("ssl_object")
        der = ssl_obj.getpeercert(binary_form=True) if ssl_obj is not None else None
        if der and fingerprint_der(der) in self._peer_fps:
            return "peer:" + fingerprint_der(der), self._limits.max_connections_per_peer
        peer = transport.get_extra_info("peername")
        return "ip:" + (str(peer[0]) if peer else "?"), self._limits.max_connections_per_client

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._client_key is None:
            return  # refused at connection_made: nothing of aiohttp's was set up
        self._counter.release(self._client_key)
        self._client_key = None
        self.disarm_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._force_close or self._close:
            return
        # waiting for a request whose headers are not complete: the header clock runs
        waiting = self._waiter is not None and not self._waiter.done() and not self._messages
        if waiting and self._header_timer is None:
            self._header_timer = self._loop.call_later(self._limits.header_timeout_s, self._header_timeout)
        elif not waiting:
            self.disarm_header_timer()

    def disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self._waiter is not None and not self._waiter.done() and not self._messages:
            self.force_close()  # headers still incomplete


def edge_middleware(limits: HttpLimits) -> Callable:
    """Outermost middleware: stops the header clock, runs the body clock until the body's end."""

    @web.middleware
    async def middleware(request: web.Request, handler) -> web.StreamResponse:
        proto = request.protocol
        if isinstance(proto, GuardedRequestHandler):
            proto.disarm_header_timer()
        timer = None
        expired: list[bool] = []
        if request.body_exists and not request.content.at_eof():
            content = request.content

            def expire() -> None:  # the handler's read fails; the answer (408) closes the connection
                expired.append(True)
                content.set_exception(BodyTimeout(f"the body did not arrive within {limits.body_timeout_s} s"))

            timer = asyncio.get_running_loop().call_later(limits.body_timeout_s, expire)
            content.on_eof(timer.cancel)
        try:
            resp = await handler(request)
        finally:
            if timer is not None:
                timer.cancel()
        if expired:
            resp.force_close()
        return resp

    return middleware


class GuardedSite(web.TCPSite):
    """A TCPSite whose connections are :class:`GuardedRequestHandler` s, with the TLS
    handshake bounded by the header timeout."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, *, ssl_context: Any, limits: HttpLimits,
                 peer_fingerprints: frozenset[str], backlog: int = 256) -> None:
        super().__init__(runner, host, port, ssl_context=ssl_context, backlog=backlog, reuse_address=True)
        self._limits = limits
        self._peer_fps = peer_fingerprints
        self.counter = ConnectionCounter()

    def set_peer_fingerprints(self, fingerprints: frozenset[str]) -> None:
        """The pinned peers' certificates changed: new connections are capped by these."""
        self._peer_fps = fingerprints

    async def start(self) -> None:
        self._runner._reg_site(self)
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None

        def factory() -> GuardedRequestHandler:
            return GuardedRequestHandler(server, loop=loop, limits=self._limits, counter=self.counter,
                                         peer_fingerprints=self._peer_fps, **server._kwargs)

        self._server = await loop.create_server(
            factory, self._host, self._port, ssl=self._ssl_context, backlog=self._backlog,
            reuse_address=self._reuse_address, ssl_handshake_timeout=self._limits.header_timeout_s)
        sockets = self._server.sockets or []
        if sockets:
            self._bound_port = sockets[0].getsockname()[1]


def runner_for(app: web.Application, limits: HttpLimits) -> web.AppRunner:
    """The app's runner, closing idle connections after the idle timeout; after an answer sent
    before the request's body was read, what the client still sends is read and discarded for at
    most ``linger_s`` (aiohttp's lingering close, so that the client reads the answer rather than
    a reset), then the connection is closed."""
    return web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0,
                         keepalive_timeout=limits.idle_timeout_s, lingering_time=limits.linger_s)
