"""Play a malicious party or a faulty network in in-memory protocol runs."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from appliance.tss import wire
from appliance.tss.protocol import Message, Party, RoundPayload
from appliance.tss.runner import Identities


def resign(msg: Message, ids: Identities, payload: bytes) -> Message:
    """``msg`` with a new payload, validly signed by its sender (the sender is malicious)."""
    unsigned = dataclasses.replace(msg, payload=payload, signature=b"")
    return dataclasses.replace(unsigned, signature=ids.signers[msg.sender].sign(unsigned.signing_digest()))


def body_type(cls: type[Party], rnd: int, broadcast: bool) -> type:
    spec = cls.ROUNDS[rnd]
    return spec.broadcast if broadcast else spec.direct


def corrupt(ids: Identities, cls: type[Party], bad: int, rnd: int, mutate: Callable[[Any], Any], *,
            broadcast: bool = True, only_to: int | None = None):
    """A tamper function: party ``bad`` sends ``mutate(body)`` in round ``rnd`` (broadcast or
    direct), validly signed, to everyone or only to ``only_to``."""

    def tamper(msg: Message, recipient: int):
        if msg.sender != bad or msg.round != rnd or msg.is_broadcast != broadcast:
            return msg
        if only_to is not None and recipient != only_to:
            return msg
        rp = wire.decode(msg.payload, RoundPayload)
        tp = body_type(cls, rnd, broadcast)
        body = mutate(wire.decode(rp.body, tp))
        new = wire.encode(RoundPayload(wire.encode(body, tp), rp.echo))
        return resign(msg, ids, new)

    tamper.corrupted = {bad}  # type: ignore[attr-defined]
    return tamper


def replace_field(name: str, fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda body: dataclasses.replace(body, **{name: fn(getattr(body, name))})


def together(*tampers):
    """Several adversaries at once: each tamper function in turn, every party they play."""

    def tamper(msg: Message, recipient: int):
        out: Any = msg
        for t in tampers:
            if not isinstance(out, Message):
                break
            out = t(out, recipient)
        return out

    tamper.corrupted = set().union(*(t.corrupted for t in tampers))  # type: ignore[attr-defined]
    return tamper
