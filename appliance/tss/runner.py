"""Deliver messages between in-memory parties until they finish (simulations and tests).

``run(parties, tamper=None)`` routes every outgoing message to its recipients (a broadcast to
every other party) through the encoded bytes, as a network would. ``tamper(msg, recipient)``
may return a replacement message (or bytes, or None to drop it) to play an adversary or a
faulty network; the parties it plays (its ``corrupted`` attribute) run honest code underneath,
so their own aborts are ignored. The first ``ProtocolAbort`` raised by an honest party is
re-raised once the run is over.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Iterable, Mapping

from appliance.tss.group import RNG
from appliance.tss.protocol import (
    IdentityDirectory,
    Message,
    MessageRejected,
    Party,
    ProtocolAbort,
    SoftwareSigner,
)

class Identities:
    """Software identity keys for a set of in-memory parties."""

    def __init__(self, parties: Iterable[int], rng: RNG) -> None:
        self.signers = {i: SoftwareSigner.generate(rng) for i in parties}
        self.directory = IdentityDirectory({i: s.public_key() for i, s in self.signers.items()})


Tamper = Callable[[Message, int], "Message | bytes | None"]


def run(parties: Mapping[int, Party], tamper: Tamper | None = None,
        rejected: list[tuple[int, Message | bytes, str]] | None = None) -> dict[int, object]:
    queue: deque[tuple[int, Message | bytes]] = deque()
    corrupted = set(getattr(tamper, "corrupted", ()))
    aborted: dict[int, ProtocolAbort] = {}

    def post(messages: list[Message]) -> None:
        for m in messages:
            targets = [m.recipient] if m.recipient is not None else [p for p in parties if p != m.sender]
            for t in targets:
                if t not in parties:
                    continue
                out: Message | bytes | None = m.encode()
                if tamper is not None:
                    out = tamper(m, t)
                    if isinstance(out, Message):
                        out = out.encode()
                if out is not None:
                    queue.append((t, out))

    for p in parties.values():
        post(p.start())
    while queue:
        target, data = queue.popleft()
        if target in aborted:
            continue
        try:
            post(parties[target].receive(data))
        except MessageRejected as exc:
            if rejected is not None:
                rejected.append((target, data, str(exc)))
        except ProtocolAbort as exc:
            aborted[target] = exc
    honest_aborts = [exc for i, exc in aborted.items() if i not in corrupted]
    if honest_aborts:
        raise honest_aborts[0]
    unfinished = [i for i, p in parties.items() if not p.done and i not in corrupted]
    if unfinished:
        raise RuntimeError(f"parties {unfinished} did not finish (messages were lost)")
    return {i: p.result for i, p in parties.items() if i not in corrupted}
