"""Fiat-Shamir transcript (SHAKE-256) with domain separation and unambiguous encoding.

Every appended item is ``type tag || len(label) || label || len(value) || value`` with 8-byte
big-endian lengths, so no two different sequences of appends hash alike (the ambiguity that
TSSHOCK exploited). Integers are encoded as a sign byte and their minimal big-endian magnitude;
points as 33-byte compressed SEC1. A transcript starts with the protocol version and the
proof's domain label, then the ``ProofContext``: session id, prover index and ``rid``.

Challenges are read from a fork of the state and sampled without bias by rejection; each
challenge is appended back, so later challenges depend on earlier ones.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterable, Union

import gmpy2

from appliance.tss.group import Q, Point

PROTOCOL_VERSION = b"appliance/cggmp24/v1"

Appendable = Union[int, bytes, str, Point, "Iterable[Appendable]"]

_TAG_INT, _TAG_BYTES, _TAG_STR, _TAG_POINT, _TAG_LIST, _TAG_LABEL = b"I", b"B", b"S", b"P", b"L", b"D"


@dataclass(frozen=True)
class ProofContext:
    """Public data every proof is bound to.

    ``session_id``: the protocol session; ``prover``: the proving party's index; ``rid``: the
    joint randomness of the key (empty before it exists); ``extra``: anything else the
    protocol wants bound (for example which round and which pair of parties)."""

    session_id: bytes
    prover: int
    rid: bytes = b""
    extra: bytes = b""

    def with_extra(self, extra: bytes) -> "ProofContext":
        return ProofContext(self.session_id, self.prover, self.rid, extra)


def _len(n: int) -> bytes:
    return n.to_bytes(8, "big")


def encode_int(x: int) -> bytes:
    x = int(x)
    mag = abs(x)
    return (b"-" if x < 0 else b"+") + mag.to_bytes((mag.bit_length() + 7) // 8, "big")


class Transcript:
    def __init__(self, domain: bytes, ctx: ProofContext | None = None) -> None:
        self._h = hashlib.shake_256()
        self._raw(_TAG_LABEL, b"version", PROTOCOL_VERSION)
        self._raw(_TAG_LABEL, b"domain", domain)
        if ctx is not None:
            self.append("ctx.session_id", ctx.session_id)
            self.append("ctx.prover", ctx.prover)
            self.append("ctx.rid", ctx.rid)
            self.append("ctx.extra", ctx.extra)

    def _raw(self, tag: bytes, label: bytes, value: bytes) -> None:
        self._h.update(tag + _len(len(label)) + label + _len(len(value)) + value)

    def append(self, label: str, value: Appendable) -> "Transcript":
        lb = label.encode()
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, (int, type(gmpy2.mpz(0)))):
            self._raw(_TAG_INT, lb, encode_int(value))
        elif isinstance(value, (bytes, bytearray)):
            self._raw(_TAG_BYTES, lb, bytes(value))
        elif isinstance(value, str):
            self._raw(_TAG_STR, lb, value.encode())
        elif isinstance(value, Point):
            self._raw(_TAG_POINT, lb, b"" if value.is_infinity else value.to_bytes())
        else:
            items = list(value)
            self._raw(_TAG_LIST, lb, _len(len(items)))
            for i, item in enumerate(items):
                self.append(f"{label}[{i}]", item)
        return self

    def append_many(self, **values: Appendable) -> "Transcript":
        for label, value in values.items():
            self.append(label, value)
        return self

    def digest(self, nbytes: int = 32) -> bytes:
        """A hash of everything appended so far (for commitments and ids)."""
        fork = self._h.copy()
        fork.update(b"digest")
        return fork.digest(nbytes)

    def _stream(self, label: str, nbytes: int) -> Iterable[bytes]:
        counter = 0
        while True:
            fork = self._h.copy()
            fork.update(b"challenge" + _len(len(label)) + label.encode() + _len(counter))
            yield fork.digest(nbytes)
            counter += 1

    def challenge_below(self, label: str, bound: int) -> int:
        """Uniform integer in [0, bound), by rejection sampling on the bit length of bound."""
        bits = (bound - 1).bit_length()
        nbytes = (bits + 7) // 8
        mask = (1 << bits) - 1
        for block in self._stream(label, nbytes):
            x = int.from_bytes(block, "big") & mask
            if x < bound:
                self.append(label, x)
                return x
        raise AssertionError("unreachable")

    def challenge_scalar(self, label: str) -> int:
        """Uniform in [0, q)."""
        return self.challenge_below(label, Q)

    def challenge_signed(self, label: str, bound: int = Q) -> int:
        """Uniform in [-bound, bound] (the paper's e ← ±q)."""
        return self.challenge_below(label, 2 * bound + 1) - bound

    def challenge_bits(self, label: str, m: int) -> list[int]:
        """m uniform bits."""
        x = self.challenge_below(label, 1 << m)
        return [(x >> i) & 1 for i in range(m)]

    def challenge_units(self, label: str, modulus: int, m: int) -> list[int]:
        """m uniform elements of Z*_modulus (non-units rejected)."""
        out: list[int] = []
        i = 0
        while len(out) < m:
            y = self.challenge_below(f"{label}[{i}]", modulus)
            i += 1
            if y != 0 and gmpy2.gcd(y, modulus) == 1:
                out.append(y)
        return out
