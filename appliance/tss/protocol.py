"""The sans-I/O protocol interface: signed messages, round bookkeeping and echo broadcast.

Each party of a protocol is a state machine: ``start() -> list[Message]`` and
``receive(message) -> list[Message]``, with ``done`` and ``result``. No sockets, clocks or
hidden randomness: the RNG and the message signer are passed in.

Messages carry protocol version, session id, protocol name, round, sender, recipient (None
for a broadcast), payload and the sender's signature over all of them. A message is
*dropped* (``MessageRejected``; nobody is blamed) when it cannot be attributed: it does not
decode, belongs to another session, protocol or version, names an unknown sender or another
recipient, is for a round already closed, or its signature does not verify (altered in
transit, replayed from elsewhere). A message that *is* validly signed by its sender but
whose content is wrong (malformed payload, failed proof, equivocation) aborts the protocol
with ``ProtocolAbort`` naming that sender: its signature proves it sent it.

Echo broadcast: a round whose ``RoundSpec.echo`` is set has its broadcasts confirmed in the
next round: every party's next broadcast carries, for each other party, the hash of the
broadcast it received and the sender's signature. A sender that signed two different
broadcasts for one round is thereby proven and named; a party that echoes a signature its
claimed sender never made is named instead. A protocol whose last round echoes gets one
more, echo-only round.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol

import cbor2
import coincurve
from coincurve.ecdsa import cdata_to_der, der_to_cdata, deserialize_compact, serialize_compact

from appliance.errors import ApplianceError, EncodingError
from appliance.tss import wire
from appliance.tss.cbor_depth import check_depth
from appliance.tss.group import RNG
from appliance.tss.transcript import PROTOCOL_VERSION, Transcript

VERSION = PROTOCOL_VERSION.decode()
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MAX_SESSION_ID = 64


class MessageRejected(ApplianceError):
    """A message that was dropped without blaming anyone."""

    code = "message_rejected"


class ProtocolAbort(ApplianceError):
    """The protocol cannot finish; ``culprits`` are the parties proven to have misbehaved."""

    code = "protocol_abort"

    def __init__(self, reason: str, culprits: Iterable[int] = (), *, protocol: str = "",
                 round: int | None = None) -> None:
        self.culprits = sorted(set(culprits))
        self.reason = reason
        self.protocol = protocol
        self.round = round
        where = f"{protocol} round {round}: " if protocol else ""
        super().__init__(f"{where}{reason} (culprits: {self.culprits})")


# --------------------------------------------------------------------------------------
# identity: who signed a message


class MessageSigner(Protocol):
    """Signs a 32-byte message digest with the party's identity key."""

    def sign(self, digest: bytes) -> bytes: ...

    def public_key(self) -> bytes: ...


class MessageVerifier(Protocol):
    """Checks a party's signature over a 32-byte digest."""

    def verify(self, party: int, digest: bytes, signature: bytes) -> bool: ...


class SoftwareSigner:
    """An identity key held in memory (tests, simulations): secp256k1 ECDSA, compact r||s."""

    def __init__(self, secret: bytes) -> None:
        self._key = coincurve.PrivateKey(secret)

    @classmethod
    def generate(cls, rng: RNG) -> "SoftwareSigner":
        return cls(rng.token_bytes(32))

    def sign(self, digest: bytes) -> bytes:
        return serialize_compact(der_to_cdata(self._key.sign(digest, hasher=None)))

    def public_key(self) -> bytes:
        return self._key.public_key.format(compressed=True)


class IdentityDirectory:
    """Party index -> secp256k1 identity public key (33 bytes); verifies compact signatures."""

    def __init__(self, keys: dict[int, bytes]) -> None:
        self._keys = {i: coincurve.PublicKey(k) for i, k in keys.items()}

    def verify(self, party: int, digest: bytes, signature: bytes) -> bool:
        key = self._keys.get(party)
        if key is None or len(signature) != 64:
            return False
        try:
            der = cdata_to_der(deserialize_compact(signature))
            return key.verify(der, digest, hasher=None)
        except Exception:
            return False


# --------------------------------------------------------------------------------------
# messages


@dataclass(frozen=True)
class Message:
    version: str
    session_id: bytes
    protocol: str
    round: int
    sender: int
    recipient: int | None
    payload: bytes
    signature: bytes = b""

    @property
    def is_broadcast(self) -> bool:
        return self.recipient is None

    def signing_digest(self) -> bytes:
        return signing_digest(self.version, self.session_id, self.protocol, self.round,
                              self.sender, self.recipient, hashlib.sha256(self.payload).digest())

    def encode(self) -> bytes:
        return cbor2.dumps([self.version, self.session_id, self.protocol, self.round,
                            self.sender, self.recipient, self.payload, self.signature])

    @classmethod
    def decode(cls, data: bytes) -> "Message":
        if not isinstance(data, (bytes, bytearray)) or len(data) > MAX_MESSAGE_BYTES:
            raise MessageRejected("message missing or too large")
        try:
            check_depth(data)  # before cbor2 recurses
            items = cbor2.loads(bytes(data))
        except Exception as exc:
            raise MessageRejected("message is not valid CBOR") from exc
        if not isinstance(items, list) or len(items) != 8:
            raise MessageRejected("message must have 8 fields")
        version, sid, proto, rnd, sender, recipient, payload, sig = items
        ok = (
            isinstance(version, str) and isinstance(sid, bytes) and len(sid) <= MAX_SESSION_ID
            and isinstance(proto, str) and len(proto) <= 32
            and type(rnd) is int and 0 < rnd < 64
            and type(sender) is int and 0 <= sender < 1 << 16
            and (recipient is None or (type(recipient) is int and 0 <= recipient < 1 << 16))
            and isinstance(payload, bytes) and isinstance(sig, bytes) and len(sig) <= 128
        )
        if not ok:
            raise MessageRejected("message fields have the wrong types or sizes")
        msg = cls(version, sid, proto, rnd, sender, recipient, payload, sig)
        if msg.encode() != bytes(data):  # trailing bytes, non-minimal lengths, indefinite items
            raise MessageRejected("message is not in canonical encoding")
        return msg


def setup_hash(protocol: str, **values: object) -> bytes:
    """A hash of a session's public parameters, exchanged (and echoed) in round 1."""
    tr = Transcript(b"session-setup").append("protocol", protocol)
    for name in sorted(values):
        tr.append(name, values[name])  # type: ignore[arg-type]
    return tr.digest()


def signing_digest(version: str, session_id: bytes, protocol: str, rnd: int, sender: int,
                   recipient: int | None, payload_hash: bytes) -> bytes:
    h = hashlib.sha256(b"appliance/message/v1")
    for part in (version.encode(), session_id, protocol.encode(), rnd.to_bytes(2, "big"),
                 sender.to_bytes(2, "big"),
                 b"*" if recipient is None else recipient.to_bytes(2, "big"), payload_hash):
        h.update(len(part).to_bytes(4, "big") + part)
    return h.digest()


@dataclass(frozen=True)
class SetupCommit:
    """A first round's broadcast: the session-parameter hash and a hash commitment V."""

    setup: bytes
    V: bytes


def xor_bytes(*items: bytes) -> bytes:
    """⊕ of equal-length byte strings (joint randomness such as rid)."""
    out = bytes(len(items[0]))
    for item in items:
        out = bytes(a ^ b for a, b in zip(out, item))
    return out


@dataclass(frozen=True)
class EchoEntry:
    """What the echoing party received from ``sender`` in the echoed round."""

    sender: int
    payload_hash: bytes
    signature: bytes


@dataclass(frozen=True)
class RoundPayload:
    """The payload of every message: the round's body plus echoes of the previous round."""

    body: bytes
    echo: list[EchoEntry]


@dataclass(frozen=True)
class RoundSpec:
    """What a round sends: a broadcast payload type, a direct payload type, whether echoed."""

    broadcast: type | None = None
    direct: type | None = None
    echo: bool = False


@dataclass
class _Inbox:
    broadcast: dict[int, Message] = field(default_factory=dict)
    direct: dict[int, Message] = field(default_factory=dict)


class Party:
    """Base of every protocol party; subclasses set PROTOCOL and ROUNDS and implement
    ``_make_round(r)`` (returns the broadcast payload or None and a dict of direct payloads)
    and ``_finish_round(r, broadcasts, directs)`` (checks everything received, computes, and
    sets ``self.result`` after the last round)."""

    PROTOCOL: str = ""
    ROUNDS: dict[int, RoundSpec] = {}

    def __init__(self, session_id: bytes, me: int, parties: Iterable[int],
                 signer: MessageSigner, verifier: MessageVerifier, rng: RNG) -> None:
        self.session_id = bytes(session_id)
        if not 0 < len(self.session_id) <= MAX_SESSION_ID:
            raise EncodingError("session id must be 1 to 64 bytes")
        self.me = me
        self.parties = sorted(set(parties))
        if me not in self.parties or len(self.parties) < 2:
            raise EncodingError("a party must be one of at least two parties")
        self.others = [p for p in self.parties if p != me]
        self.signer = signer
        self.verifier = verifier
        self.rng = rng
        self.round = 0
        self.done = False
        self.result: Any = None
        self._rounds = dict(self.ROUNDS)
        last = max(self._rounds)
        if self._rounds[last].echo:
            self._rounds[last + 1] = RoundSpec(broadcast=_EchoOnly)
        self._inbox: dict[int, _Inbox] = {r: _Inbox() for r in self._rounds}
        self._sent_broadcast: dict[int, Message] = {}

    # -- public interface ------------------------------------------------------------

    @property
    def last_round(self) -> int:
        return max(self._rounds)

    def start(self) -> list[Message]:
        if self.round != 0:
            raise ProtocolAbort("already started", protocol=self.PROTOCOL)
        return self._enter_round(1)

    def receive(self, message: Message | bytes) -> list[Message]:
        """Take one message; return the messages to send. Raises MessageRejected (drop it)
        or ProtocolAbort (the session is over)."""
        msg = Message.decode(message) if isinstance(message, (bytes, bytearray)) else message
        self._accept(msg)
        if self.round == 0 or self.done:
            return []
        out: list[Message] = []
        while not self.done and self._round_complete(self.round):
            self._close_round(self.round)
            if not self.done:
                out += self._enter_round(self.round + 1)
        return out

    # -- envelope checks -------------------------------------------------------------

    def _accept(self, msg: Message) -> None:
        if msg.version != VERSION:
            raise MessageRejected("unsupported protocol version")
        if msg.session_id != self.session_id or msg.protocol != self.PROTOCOL:
            raise MessageRejected("message from another session or protocol")
        if msg.sender not in self.others:
            raise MessageRejected("unknown sender")
        if msg.recipient is not None and msg.recipient != self.me:
            raise MessageRejected("message addressed to another party")
        spec = self._rounds.get(msg.round)
        if spec is None:
            raise MessageRejected("no such round")
        if msg.round < self.round or (msg.round == self.round and self.done):
            raise MessageRejected("round already closed")
        if not self.verifier.verify(msg.sender, msg.signing_digest(), msg.signature):
            raise MessageRejected("bad sender signature")
        expected = spec.broadcast if msg.is_broadcast else spec.direct
        if expected is None:
            raise ProtocolAbort("sent a message kind this round does not have", [msg.sender],
                                protocol=self.PROTOCOL, round=msg.round)
        box = self._inbox[msg.round]
        slot = box.broadcast if msg.is_broadcast else box.direct
        previous = slot.get(msg.sender)
        if previous is not None:
            if previous.payload == msg.payload:
                raise MessageRejected("duplicate message")
            raise ProtocolAbort("signed two different messages for one round", [msg.sender],
                                protocol=self.PROTOCOL, round=msg.round)
        slot[msg.sender] = msg

    def _round_complete(self, r: int) -> bool:
        spec, box = self._rounds[r], self._inbox[r]
        need_b = spec.broadcast is not None
        need_d = spec.direct is not None
        return all((not need_b or p in box.broadcast) and (not need_d or p in box.direct)
                   for p in self.others)

    # -- round transitions -----------------------------------------------------------

    def _sign(self, rnd: int, recipient: int | None, body: bytes, echo: list[EchoEntry]) -> Message:
        payload = wire.encode(RoundPayload(body, echo))
        msg = Message(VERSION, self.session_id, self.PROTOCOL, rnd, self.me, recipient, payload)
        sig = self.signer.sign(msg.signing_digest())
        return Message(VERSION, self.session_id, self.PROTOCOL, rnd, self.me, recipient, payload, sig)

    def _enter_round(self, r: int) -> list[Message]:
        self.round = r
        spec = self._rounds[r]
        if spec.broadcast is _EchoOnly:
            bcast, directs = _EchoOnly(), {}
        else:
            bcast, directs = self._make_round(r)
        echo = self._echo_entries(r - 1) if self._rounds.get(r - 1, RoundSpec()).echo else []
        out: list[Message] = []
        if spec.broadcast is not None:
            msg = self._sign(r, None, wire.encode(bcast, spec.broadcast), echo)
            self._sent_broadcast[r] = msg
            out.append(msg)
        if spec.direct is not None:
            if sorted(directs) != self.others:
                raise ProtocolAbort("internal: direct messages must go to every other party")
            out += [self._sign(r, j, wire.encode(directs[j], spec.direct), []) for j in self.others]
        return out

    def _echo_entries(self, r: int) -> list[EchoEntry]:
        box = self._inbox[r].broadcast
        return [EchoEntry(j, hashlib.sha256(m.payload).digest(), m.signature)
                for j, m in sorted(box.items())]

    def _unwrap(self, msg: Message, tp: type) -> tuple[Any, list[EchoEntry]]:
        try:
            rp = wire.decode(msg.payload, RoundPayload)
            return wire.decode(rp.body, tp), rp.echo
        except EncodingError as exc:
            raise ProtocolAbort(f"malformed payload: {exc}", [msg.sender],
                                protocol=self.PROTOCOL, round=msg.round) from exc

    def _check_echo(self, r: int, echoer: int, entries: list[EchoEntry]) -> None:
        """Compare ``echoer``'s view of round r's broadcasts with ours."""
        abort = lambda why, who: ProtocolAbort(why, [who], protocol=self.PROTOCOL, round=r + 1)  # noqa: E731
        if [e.sender for e in entries] != [p for p in self.parties if p != echoer]:
            raise abort("echo does not list every other party", echoer)
        for e in entries:
            mine = self._sent_broadcast[r] if e.sender == self.me else self._inbox[r].broadcast[e.sender]
            if e.payload_hash == hashlib.sha256(mine.payload).digest():
                continue
            digest = signing_digest(VERSION, self.session_id, self.PROTOCOL, r, e.sender, None,
                                    e.payload_hash)
            if e.sender != self.me and self.verifier.verify(e.sender, digest, e.signature):
                raise abort("sent different broadcasts to different parties", e.sender)
            raise abort("echoed a broadcast its sender never signed", echoer)

    def _close_round(self, r: int) -> None:
        spec, box = self._rounds[r], self._inbox[r]
        bcasts: dict[int, Any] = {}
        directs: dict[int, Any] = {}
        echoes: dict[int, list[EchoEntry]] = {}
        for j in self.others:
            if spec.broadcast is not None:
                bcasts[j], echoes[j] = self._unwrap(box.broadcast[j], spec.broadcast)
            if spec.direct is not None:
                directs[j], stray = self._unwrap(box.direct[j], spec.direct)
                if stray:
                    raise ProtocolAbort("echo in a direct message", [j], protocol=self.PROTOCOL, round=r)
        prev_echo = self._rounds.get(r - 1, RoundSpec()).echo
        for j in self.others:
            if prev_echo:
                self._check_echo(r - 1, j, echoes.get(j, []))
            elif echoes.get(j):
                raise ProtocolAbort("unexpected echo", [j], protocol=self.PROTOCOL, round=r)
        if spec.broadcast is _EchoOnly:
            self._finish_echo_round()
        else:
            try:
                self._finish_round(r, bcasts, directs)
            except ProtocolAbort as exc:
                exc.protocol = exc.protocol or self.PROTOCOL
                exc.round = exc.round or r
                raise
        if r == self.last_round and not self.done:
            raise ProtocolAbort("internal: last round closed without a result", protocol=self.PROTOCOL)

    def _finish_echo_round(self) -> None:
        self.result = self._final_result()
        self.done = True

    # -- subclass hooks --------------------------------------------------------------

    def _make_round(self, r: int) -> tuple[Any, dict[int, Any]]:
        raise NotImplementedError

    def _finish_round(self, r: int, broadcasts: dict[int, Any], directs: dict[int, Any]) -> None:
        raise NotImplementedError

    def _final_result(self) -> Any:
        """For protocols whose last round echoes: the result once the echoes agree."""
        raise NotImplementedError

    def require_same_setup(self, mine: bytes, theirs: dict[int, bytes]) -> None:
        """Stop, blaming nobody, if another party was given different session parameters
        (threshold, parties, sizes...): that is the coordinator's doing or a configuration
        mismatch, and no party's message proves which side is wrong."""
        differ = sorted(j for j, h in theirs.items() if h != mine)
        if differ:
            raise ProtocolAbort(f"parties {differ} were given different session parameters",
                                protocol=self.PROTOCOL, round=self.round)

    def blame(self, reason: str, *culprits: int) -> ProtocolAbort:
        return ProtocolAbort(reason, culprits, protocol=self.PROTOCOL, round=self.round)


@dataclass(frozen=True)
class _EchoOnly:
    """The body of the extra round that confirms the last round's broadcasts."""
