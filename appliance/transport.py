"""Node-to-node transport: pinned mutual TLS (aiohttp) and the wire form of protocol messages.

A protocol message travels inside a *frame* (CBOR map)::

    {"s": session id, "p": protocol, "r": round, "f": sender index, "t": recipient or None,
     "e": encrypted?, "d": bytes}

For a broadcast, ``d`` is the signed message itself (``Message.encode()``). For a direct
message (which carries secret shares) ``d`` is that encoding encrypted to the recipient's
HSM transport key (``hsm.encrypt_to``: ephemeral ECDH P-256, HKDF, AES-256-GCM), bound to the
frame header; the recipient decrypts inside its HSM. After decoding, the message's own
fields must equal the frame header, and the state machine checks the sender's identity
signature: an altered, replayed or misdirected frame is dropped and nobody is blamed.
"""

from __future__ import annotations

import asyncio
import json
import struct
import time
from dataclasses import dataclass
from typing import Any, Callable

import aiohttp
import cbor2
from yarl import URL

from appliance.bounded import loads_json
from appliance.config import NodeConfig, PeerInfo
from appliance.errors import ServiceError
from appliance.logs import REQUEST_ID_HEADER, current_request_id
from appliance.tls import peer_client_context
from appliance.tss.cbor_depth import check_depth
from appliance.tss.protocol import Message, MessageRejected
from hsm.transport import encrypt_to

FRAME_CONTEXT = b"threshold-appliance/peer-frame/v1"
MAX_FRAMES = 64


def frame_context(job_id: str, session_id: bytes, protocol: str, rnd: int, sender: int,
                  recipient: int) -> bytes:
    parts = [FRAME_CONTEXT, job_id.encode(), session_id, protocol.encode(), rnd.to_bytes(2, "big"),
             sender.to_bytes(4, "big"), recipient.to_bytes(4, "big")]
    return b"".join(struct.pack(">I", len(p)) + p for p in parts)


def make_frame(job_id: str, msg: Message, recipient: int, transport_key: bytes | None) -> dict:
    data = msg.encode()
    encrypted = msg.recipient is not None
    if encrypted:
        ctx = frame_context(job_id, msg.session_id, msg.protocol, msg.round, msg.sender, recipient)
        data = encrypt_to(transport_key, data, context=ctx)
    return {"s": msg.session_id, "p": msg.protocol, "r": msg.round, "f": msg.sender,
            "t": msg.recipient, "e": encrypted, "d": data}


@dataclass(frozen=True)
class Frame:
    session_id: bytes
    protocol: str
    round: int
    sender: int
    recipient: int | None
    encrypted: bool
    data: bytes

    @classmethod
    def parse(cls, m: Any) -> "Frame":
        # exact types and ranges: bytes(n) of a peer's integer would allocate n bytes, and an
        # out-of-range round or index would overflow the frame context later
        try:
            s, p, r, f_, t, e, d = (m["s"], m["p"], m["r"], m["f"], m["t"], m["e"], m["d"])
        except (KeyError, TypeError, IndexError):
            raise MessageRejected("malformed frame") from None
        if not (isinstance(s, bytes) and len(s) <= 64 and isinstance(p, str) and len(p) <= 32
                and type(r) is int and 0 < r < 64 and type(f_) is int and 0 <= f_ < 1 << 16
                and (t is None or (type(t) is int and 0 <= t < 1 << 16))
                and type(e) is bool and isinstance(d, bytes)):
            raise MessageRejected("malformed frame")
        f = cls(s, p, r, f_, t, e, d)
        if f.encrypted != (f.recipient is not None):
            raise MessageRejected("direct messages must be encrypted, broadcasts not")
        return f

    def check(self, msg: Message) -> None:
        if (msg.session_id, msg.protocol, msg.round, msg.sender, msg.recipient) != (
                self.session_id, self.protocol, self.round, self.sender, self.recipient):
            raise MessageRejected("message does not match its frame")


def encode_batch(job_id: str, sender: int, frames: list[dict]) -> bytes:
    return cbor2.dumps({"job": job_id, "from": sender, "frames": frames})


def decode_batch(body: bytes) -> tuple[str, int, list[Any]]:
    """The batch's job id, sender and frames, or MessageRejected (a body nested deeper than
    the CBOR bound is refused before cbor2 parses it)."""
    try:
        check_depth(body)
        m = cbor2.loads(body)
        job, sender, frames = str(m["job"]), int(m["from"]), list(m["frames"])
    except Exception:
        raise MessageRejected("malformed message batch") from None
    if len(frames) > MAX_FRAMES:
        raise MessageRejected("too many frames in one batch")
    return job, sender, frames


class PeerError(Exception):
    """A peer could not be reached (``status`` None) or answered with an error: its HTTP
    ``status`` and ``body`` (``{"error": {"code", "message", ...}}``)."""

    def __init__(self, peer: PeerInfo, message: str, status: int | None = None,
                 body: dict | None = None) -> None:
        super().__init__(f"{peer.id}: {message}")
        self.peer = peer
        self.status = status
        self.body = body or {}

    @property
    def error(self) -> dict:
        """The peer's error object (empty if it sent none)."""
        err = self.body.get("error") if isinstance(self.body, dict) else None
        return err if isinstance(err, dict) else {}

    @property
    def code(self) -> str | None:
        return self.error.get("code")

    def service_error(self, message: str | None = None, *, code: str = "peer_refused") -> ServiceError:
        """The peer's error, relayed with its code (``code`` if it sent none); a 403 is a
        refusal (:class:`PolicyDenied`), whatever check it names."""
        err = dict(self.error)
        if message is not None:
            err["message"] = message
        if self.status == 403:
            err["denied"] = True
        return ServiceError.from_error(err, code=code)


PROTOCOL_POOL = "protocol"
FORWARD_POOL = "forward"
POOL_LIMITS = {PROTOCOL_POOL: 64, FORWARD_POOL: 16}  # connections per peer


class PeerClient:
    """HTTPS client to the other nodes, each pinned to its own certificate.

    Two connection pools per peer: ``protocol`` (jobs, frames, reports, health, everything the
    node itself needs) and ``forward`` (clients' reads, long-polls and decisions passed on to
    the node that keeps a request). A long-poll holds its connection up to a minute; in their
    own bounded pool, 140 of them wait for one another instead of starving the protocol.

    One ``aiohttp.ClientSession`` per (pool, peer), kept for the node's life: its connections
    stay open between requests (keep-alive), so a signature costs no TCP or TLS handshake.
    :attr:`connections_opened` counts the TCP connections made to each peer id (and
    ``on_connect(peer_id, pool)`` is called for each: the node's metrics counter)."""

    def __init__(self, config: NodeConfig, *, connect_timeout: float = 2.0,
                 pool_limits: dict[str, int] | None = None,
                 on_connect: Callable[[str, str], None] | None = None,
                 on_call: Callable[[float], None] | None = None) -> None:
        self.config = config
        self.connect_timeout = connect_timeout
        self.pool_limits = dict(POOL_LIMITS, **(pool_limits or {}))
        self._sessions: dict[tuple[str, int], aiohttp.ClientSession] = {}
        self._retired: list[aiohttp.ClientSession] = []
        self.connections_opened: dict[str, int] = {}
        self.on_connect = on_connect
        self.on_call = on_call  # the seconds each request took (the node's peer_call stage)

    def _tracer(self, peer_id: str, pool: str) -> aiohttp.TraceConfig:
        async def created(_session, _ctx, _params) -> None:
            self.connections_opened[peer_id] = self.connections_opened.get(peer_id, 0) + 1
            if self.on_connect is not None:
                self.on_connect(peer_id, pool)

        tc = aiohttp.TraceConfig()
        tc.on_connection_create_end.append(created)
        return tc

    def _session(self, peer: PeerInfo, pool: str = PROTOCOL_POOL) -> aiohttp.ClientSession:
        s = self._sessions.get((pool, peer.index))
        if s is None or s.closed:
            ctx = peer_client_context(self.config.tls_cert, self.config.tls_key, peer.tls_cert)
            conn = aiohttp.TCPConnector(ssl=ctx, limit=self.pool_limits[pool], keepalive_timeout=30)
            s = aiohttp.ClientSession(connector=conn, base_url=peer.url,
                                      trace_configs=[self._tracer(peer.id, pool)])
            self._sessions[(pool, peer.index)] = s
        return s

    def retire(self, indices: frozenset[int]) -> None:
        """The pins of ``indices`` changed (this node's own: it presents a new certificate):
        their sessions take no new request (requests under way finish; closed at :meth:`close`)
        and the next request makes a TLS context with the pins in force."""
        mine = self.config.me.index in indices
        for key in [k for k in self._sessions if mine or k[1] in indices]:
            self._retired.append(self._sessions.pop(key))

    async def close(self) -> None:
        for s in [*self._sessions.values(), *self._retired]:
            await s.close()
        self._sessions.clear()
        self._retired.clear()

    async def request(self, peer: PeerInfo, method: str, path: URL, *, json_body: Any = None,
                      data: bytes | None = None, content_type: str | None = None,
                      timeout: float = 10.0, pool: str = PROTOCOL_POOL) -> dict:
        """``path``: a relative URL made by :func:`appliance.ids.peer_path` from encoded
        segments (a string is refused: ids are never pasted into a URL). ``pool``: the
        connection pool (``protocol``, or ``forward`` for clients' forwarded reads)."""
        if not isinstance(path, URL) or path.is_absolute():
            raise TypeError("a peer path is a relative yarl.URL from appliance.ids.peer_path")
        headers = {}
        rid = current_request_id()
        if rid is not None:  # the request (or job) this call is part of (appliance/logs.py)
            headers[REQUEST_ID_HEADER] = rid
        if json_body is not None:
            data = json.dumps(json_body).encode()
            content_type = "application/json"
        if content_type:
            headers["Content-Type"] = content_type
        t = aiohttp.ClientTimeout(total=timeout, sock_connect=self.connect_timeout)
        t0 = time.perf_counter()
        try:
            async with self._session(peer, pool).request(method, path, data=data, headers=headers,
                                                   timeout=t) as resp:
                raw = await resp.read()
                try:
                    body = loads_json(raw) if raw else {}
                except ValueError:  # TooDeep is one too
                    body = {}
                if resp.status >= 400:
                    err = body.get("error", {}) if isinstance(body, dict) else {}
                    raise PeerError(peer, err.get("message", f"HTTP {resp.status}"), resp.status, body)
                return body
        except PeerError:
            raise
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise PeerError(peer, f"unreachable ({type(exc).__name__})") from None
        finally:
            if self.on_call is not None:
                self.on_call(time.perf_counter() - t0)
