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

Rounds are objects (as in taurushq-io/multi-party-sig's ``protocols/cmp/sign/round*.go``): one
``Round`` subclass per round, its state in its fields. ``send()`` makes the round's messages;
``agree()`` stops without blame when the session parameters differ; ``check(j, ...)`` checks
sender j's messages and raises ``Misbehaviour`` if they prove j misbehaved; ``finish()``
computes from everything received and returns the next round or ``Done(result)``. Every
sender's messages are checked before the round aborts, and the abort names every sender
proven at fault (as LFDT-Lockness/cggmp21 collects ``faulty_parties``). ``ProtocolAbort`` is
only for that (and for stops without blame); a caller's wrong arguments raise
``ParameterError``.

Echo broadcast: a round whose ``echo`` is set has its broadcasts confirmed in the
next round: every party's next broadcast carries, for each other party, the hash of the
broadcast it received and the sender's signature. A sender that signed two different
broadcasts for one round is thereby proven and named; a party that echoes a signature its
claimed sender never made is named instead. A protocol whose last round echoes gets one
more, echo-only round.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, ClassVar, Iterable, Protocol

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


class Misbehaviour(Exception):
    """Raised by ``Round.check`` (and the envelope checks) for the sender being checked: its
    signed messages prove it misbehaved. The party collects every sender's before aborting."""


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


class CheckExecutor(Protocol):
    """Runs a round's per-sender checks: ``map(fn, senders)`` gives ``fn``'s results in the
    order of ``senders``. ``SEQUENTIAL`` (the default) runs them one after another in the
    caller's thread; a node passes a thread pool sized to its cores (gmpy2 releases the GIL
    in its exponentiations), e.g. a ``concurrent.futures.ThreadPoolExecutor``. The checks
    only read the round's state, so the order they run in changes nothing."""

    def map(self, fn: Callable[[int], Any], items: Iterable[int], /) -> Iterable[Any]: ...


class _Sequential:
    def map(self, fn: Callable[[int], Any], items: Iterable[int], /) -> list[Any]:
        return [fn(x) for x in items]


SEQUENTIAL: CheckExecutor = _Sequential()


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
        """The message's bytes (encoded once per object: a broadcast goes to every party)."""
        return self._encoded

    @cached_property
    def _encoded(self) -> bytes:
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


def abort_naming(faults: dict[int, str], *, protocol: str = "", round: int | None = None) -> ProtocolAbort:
    """The abort naming every sender in ``faults`` (sender -> why), in index order."""
    reason = "; ".join(f"party {j}: {why}" for j, why in sorted(faults.items()))
    return ProtocolAbort(reason, faults, protocol=protocol, round=round)


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
    """What a round sends: a broadcast payload type, a direct payload type, whether echoed
    (the extra echo-only round; every ``Round`` class carries the same three attributes)."""

    broadcast: type | None = None
    direct: type | None = None
    echo: bool = False


@dataclass(frozen=True)
class Done:
    """What the last round's ``finish`` returns: the protocol's result."""

    result: Any


class Round:
    """One round of a protocol. Subclasses are dataclasses whose first field is ``party``
    (the session: indices, keys, RNG, proof contexts) and whose other fields are the state
    the round was handed by the previous one; they set the class attributes ``broadcast``,
    ``direct`` (payload types, or None) and ``echo``."""

    broadcast: ClassVar[type | None] = None
    direct: ClassVar[type | None] = None
    echo: ClassVar[bool] = False
    party: "Party"

    def send(self) -> tuple[Any, dict[int, Any]]:
        """This party's broadcast body (or None) and direct bodies (one per other party)."""
        return None, {}

    def agree(self, broadcasts: dict[int, Any]) -> None:
        """Stop without blame (``ProtocolAbort`` with no culprits) if another party was given
        other session parameters; runs before any sender's messages are judged."""

    def check(self, sender: int, broadcast: Any, direct: Any) -> None:
        """Check what ``sender`` sent this round; raise ``Misbehaviour`` if it proves the
        sender misbehaved. May keep what it accepted in the round's fields."""

    def finish(self, broadcasts: dict[int, Any], directs: dict[int, Any]) -> "Round | Done":
        """Compute from everything received (all checked): the next round, or ``Done``."""
        raise NotImplementedError

    def next(self, **state: Any) -> "Round":
        """The party's next round (its ``ROUNDS[r + 1]``, so that a test's party can swap
        in a misbehaving round), handed ``state``; called from ``finish`` of round r."""
        return self.party.ROUNDS[self.party.round + 1](self.party, **state)


@dataclass
class _Inbox:
    broadcast: dict[int, Message] = field(default_factory=dict)
    direct: dict[int, Message] = field(default_factory=dict)


class Party:
    """Base of every protocol party; subclasses set PROTOCOL and ROUNDS (round number ->
    ``Round`` class) and implement ``_first_round()``."""

    PROTOCOL: str = ""
    ROUNDS: dict[int, type[Round]] = {}

    def __init__(self, session_id: bytes, me: int, parties: Iterable[int],
                 signer: MessageSigner, verifier: MessageVerifier, rng: RNG, *,
                 checks: CheckExecutor = SEQUENTIAL) -> None:
        self.session_id = bytes(session_id)
        self.checks = checks
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
        self._rounds: dict[int, type[Round] | RoundSpec] = dict(self.ROUNDS)
        last = max(self._rounds)
        if self._rounds[last].echo:
            self._rounds[last + 1] = RoundSpec(broadcast=_EchoOnly)
        self._inbox: dict[int, _Inbox] = {r: _Inbox() for r in self._rounds}
        self._sent_broadcast: dict[int, Message] = {}
        self._current: Round | None = None
        self._echoed_result: Done | None = None

    # -- public interface ------------------------------------------------------------

    @property
    def last_round(self) -> int:
        return max(self._rounds)

    def start(self) -> list[Message]:
        if self.round != 0:
            raise ProtocolAbort("already started", protocol=self.PROTOCOL)
        self._current = self._first_round()
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
            assert self._current is not None
            bcast, directs = self._current.send()
        echo = self._echo_entries(r - 1) if self._echoes(r - 1) else []
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

    def _echoes(self, r: int) -> bool:
        return r in self._rounds and self._rounds[r].echo

    def _echo_entries(self, r: int) -> list[EchoEntry]:
        box = self._inbox[r].broadcast
        return [EchoEntry(j, hashlib.sha256(m.payload).digest(), m.signature)
                for j, m in sorted(box.items())]

    def _unwrap(self, msg: Message, tp: type) -> tuple[Any, list[EchoEntry]]:
        """The body and echo of a signed message; Misbehaviour (its sender's) if malformed."""
        try:
            rp = wire.decode(msg.payload, RoundPayload)
            return wire.decode(rp.body, tp), rp.echo
        except EncodingError as exc:
            raise Misbehaviour(f"malformed payload: {exc}") from exc

    def _check_echo(self, r: int, echoer: int, entries: list[EchoEntry]) -> tuple[int, str] | None:
        """Compare ``echoer``'s view of round r's broadcasts with ours: None when they agree,
        else (the party proven at fault, why)."""
        if [e.sender for e in entries] != [p for p in self.parties if p != echoer]:
            return echoer, "echo does not list every other party"
        for e in entries:
            mine = self._sent_broadcast[r] if e.sender == self.me else self._inbox[r].broadcast[e.sender]
            if e.payload_hash == hashlib.sha256(mine.payload).digest():
                continue
            digest = signing_digest(VERSION, self.session_id, self.PROTOCOL, r, e.sender, None,
                                    e.payload_hash)
            if e.sender != self.me and self.verifier.verify(e.sender, digest, e.signature):
                return e.sender, "sent different broadcasts to different parties"
            return echoer, "echoed a broadcast its sender never signed"
        return None

    def _abort_naming(self, faults: dict[int, str], r: int) -> ProtocolAbort:
        return abort_naming(faults, protocol=self.PROTOCOL, round=r)

    def _close_round(self, r: int) -> None:
        spec, box = self._rounds[r], self._inbox[r]
        bcasts: dict[int, Any] = {}
        directs: dict[int, Any] = {}
        faults: dict[int, str] = {}
        for j in self.others:
            try:
                echo: list[EchoEntry] = []
                if spec.broadcast is not None:
                    bcasts[j], echo = self._unwrap(box.broadcast[j], spec.broadcast)
                if spec.direct is not None:
                    directs[j], stray = self._unwrap(box.direct[j], spec.direct)
                    if stray:
                        raise Misbehaviour("echo in a direct message")
                if self._echoes(r - 1):
                    found = self._check_echo(r - 1, j, echo)
                    if found is not None:
                        faults.setdefault(found[0], found[1])
                elif echo:
                    raise Misbehaviour("unexpected echo")
            except Misbehaviour as exc:
                faults.setdefault(j, str(exc))
        if faults:
            raise self._abort_naming(faults, r)
        if spec.broadcast is _EchoOnly:
            assert self._echoed_result is not None
            self.result, self.done = self._echoed_result.result, True
            return
        assert self._current is not None
        try:
            out = self._run_round(self._current, bcasts, directs, r)
        except ProtocolAbort as exc:
            exc.protocol = exc.protocol or self.PROTOCOL
            exc.round = exc.round or r
            raise
        if isinstance(out, Round):
            self._current = out
        elif isinstance(out, Done) and r == self.last_round:
            self._current, self.result, self.done = None, out.result, True
        elif isinstance(out, Done) and self._echoes(r) and r + 1 == self.last_round:
            self._current, self._echoed_result = None, out  # released after the echo round
        else:
            raise ProtocolAbort("internal: a round ended without a next round or a result",
                                protocol=self.PROTOCOL, round=r)

    def _run_round(self, rnd: Round, bcasts: dict[int, Any], directs: dict[int, Any],
                   r: int) -> "Round | Done":
        """Agree on the parameters, check every sender (naming all who misbehaved), finish."""
        rnd.agree(bcasts)

        def check(j: int) -> str | None:
            try:
                rnd.check(j, bcasts.get(j), directs.get(j))
            except Misbehaviour as exc:
                return str(exc)
            return None

        executor = self.checks if len(self.others) > 1 else SEQUENTIAL
        found = executor.map(check, self.others)
        faults = {j: why for j, why in zip(self.others, found) if why is not None}
        if faults:
            raise self._abort_naming(faults, r)
        return rnd.finish(bcasts, directs)

    # -- subclass hooks --------------------------------------------------------------

    def _first_round(self) -> Round:
        raise NotImplementedError

    def require_same_setup(self, mine: bytes, theirs: dict[int, bytes]) -> None:
        """Stop, blaming nobody, if another party was given different session parameters
        (threshold, parties, sizes...): that is the coordinator's doing or a configuration
        mismatch, and no party's message proves which side is wrong."""
        differ = sorted(j for j, h in theirs.items() if h != mine)
        if differ:
            raise ProtocolAbort(f"parties {differ} were given different session parameters",
                                protocol=self.PROTOCOL, round=self.round)


@dataclass(frozen=True)
class _EchoOnly:
    """The body of the extra round that confirms the last round's broadcasts."""
