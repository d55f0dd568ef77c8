"""Helpers for the fuzz tests: hypothesis strategies over CBOR trees shaped like (or unlike)
the wire schema of a payload dataclass, and a lock-step driver that snapshots a live protocol
party just before the last message of a round arrives.

``APPLIANCE_SOAK=1`` (set by ``make soak``) multiplies the example counts.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import cbor2
from hypothesis import strategies as st

from appliance.tss import wire
from appliance.tss.group import Q, Point
from appliance.tss.protocol import EchoEntry, Message, Party, RoundPayload, SoftwareSigner

SOAK = os.environ.get("APPLIANCE_SOAK", "") not in ("", "0")


def examples(normal: int, soak: int) -> int:
    return soak if SOAK else normal


# --------------------------------------------------------------------------------------
# CBOR trees

_EDGE_INTS = [0, 1, -1, 2, Q - 1, Q, Q + 1, 2 ** 255, 2 ** 256, -(2 ** 256), 2 ** 2048 - 1,
              2 ** 3072 + 1, 2 ** (wire.MAX_INT_BITS - 1), 2 ** wire.MAX_INT_BITS, 2 ** (wire.MAX_INT_BITS + 8),
              -(2 ** 64), 2 ** 64]
_POINTS = [Point.generator_mul(k).to_bytes() for k in (1, 2, 3, Q - 1, 12345678901234567890)]
_BAD_POINTS = [b"", b"\x02" + b"\x00" * 32, b"\x04" + b"\x11" * 64, b"\x05" + b"\x01" * 32,
               b"\x02" + b"\xff" * 32, b"\x00", _POINTS[0][:-1], _POINTS[0] + b"\x00"]

ints = st.one_of(st.sampled_from(_EDGE_INTS), st.integers(-(2 ** 70), 2 ** 70),
                 st.integers(0, 2 ** 3100))
scalars = st.integers(0, Q + 10)


def any_cbor(max_leaves: int = 20) -> st.SearchStrategy:
    """Arbitrary CBOR-encodable values, nested."""
    leaves = st.one_of(st.none(), st.booleans(), ints, st.floats(allow_nan=True),
                       st.binary(max_size=64), st.text(max_size=16), st.sampled_from(_POINTS))
    return st.recursive(leaves, lambda kids: st.one_of(
        st.lists(kids, max_size=5),
        st.dictionaries(st.one_of(st.integers(-3, 20), st.text(max_size=3)), kids, max_size=4)),
        max_leaves=max_leaves)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], True
    return tp, False


def shaped(tp: Any, depth: int = 0) -> st.SearchStrategy:
    """CBOR trees with the *shape* of ``tp`` (right nesting, roughly right leaf types) but
    unconstrained values: what a well-typed but lying peer can send."""
    tp, optional = _unwrap_optional(tp)
    origin = typing.get_origin(tp)
    if tp is int:
        s = st.one_of(scalars, ints)
    elif tp is Point:
        s = st.one_of(st.sampled_from(_POINTS), st.sampled_from(_BAD_POINTS), st.binary(min_size=33, max_size=33))
    elif tp is bytes:
        s = st.one_of(st.binary(max_size=40), st.binary(min_size=32, max_size=32))
    elif tp is str:
        s = st.one_of(st.sampled_from(["", "delta", "chi", "x"]), st.text(max_size=8))
    elif tp is bool:
        s = st.booleans()
    elif origin in (list, tuple):
        (arg, *_) = typing.get_args(tp)
        s = st.lists(shaped(arg, depth + 1), max_size=4 if depth < 3 else 1)
    elif origin is dict:
        _, vt = typing.get_args(tp)
        s = st.dictionaries(st.integers(-2, 8), shaped(vt, depth + 1), max_size=4 if depth < 3 else 1)
    elif dataclasses.is_dataclass(tp):
        s = st.tuples(*(shaped(ftp, depth + 1) for _, ftp in wire._hints(tp))).map(list)
    else:  # pragma: no cover
        raise TypeError(tp)
    return st.one_of(st.none(), s) if optional else s


def canonical(obj: Any) -> bytes:
    return cbor2.dumps(obj, canonical=True)


# -- mutating a real payload ---------------------------------------------------------


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, prefix + (i,))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, prefix + (k,))
    return out


def _get(obj: Any, path: tuple) -> Any:
    for p in path:
        obj = obj[p]
    return obj


def _set(obj: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    parent = _get(obj, path[:-1])
    parent[path[-1]] = value
    return obj


def _replacement(data: st.DataObject, old: Any) -> Any:
    if isinstance(old, bool):
        choice = st.one_of(st.just(not old), any_cbor(4))
    elif isinstance(old, int):
        choice = st.one_of(st.sampled_from([old + 1, old - 1, -old, old ^ 1, old + Q, old * 2, 0]),
                           ints, st.binary(max_size=8), st.none())
    elif isinstance(old, bytes):
        flips = [bytes(old[:i]) + bytes([old[i] ^ 1]) + bytes(old[i + 1:]) for i in range(min(len(old), 4))]
        choice = st.one_of(st.sampled_from(flips or [b"\x00"]), st.just(old[:-1]), st.just(old + b"\x00"),
                           st.sampled_from(_POINTS + _BAD_POINTS), st.binary(max_size=40), st.integers())
    elif isinstance(old, list):
        choice = st.one_of(st.just(old[:-1]), st.just(old + old[-1:]), st.just(list(reversed(old))),
                           st.just([]), st.just({}), st.lists(any_cbor(3), max_size=3))
    elif isinstance(old, dict):
        keys = sorted(old, key=repr)
        choice = st.one_of(st.just({k: old[k] for k in keys[:-1]}),
                           st.just({(k + 7 if isinstance(k, int) else k): v for k, v in old.items()}),
                           st.just(list(old.values())), st.just({}))
    else:
        choice = any_cbor(4)
    return data.draw(choice, label="replacement")


def mutate_tree(data: st.DataObject, obj: Any, rounds: int = 3) -> Any:
    """Replace one to ``rounds`` sub-trees of ``obj`` (a decoded CBOR tree, copied first)."""
    obj = copy.deepcopy(_thaw(obj))
    for _ in range(data.draw(st.integers(1, rounds), label="n_mutations")):
        paths = _paths(obj)
        path = data.draw(st.sampled_from(paths), label="path")
        obj = _set(obj, path, _replacement(data, _get(obj, path)))
    return obj


def _thaw(obj: Any) -> Any:
    """cbor2 may hand back immutable containers for map keys; make everything plain."""
    if isinstance(obj, (list, tuple)):
        return [_thaw(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _thaw(v) for k, v in obj.items()}
    return obj


def mutate_bytes(data: st.DataObject, raw: bytes) -> bytes:
    kind = data.draw(st.sampled_from(["truncate", "flip", "insert", "random", "extend"]), label="bytes_kind")
    if kind == "truncate" and raw:
        return raw[: data.draw(st.integers(0, len(raw) - 1))]
    if kind == "flip" and raw:
        i = data.draw(st.integers(0, len(raw) - 1))
        bit = data.draw(st.integers(0, 7))
        return raw[:i] + bytes([raw[i] ^ (1 << bit)]) + raw[i + 1:]
    if kind == "insert":
        i = data.draw(st.integers(0, len(raw)))
        return raw[:i] + data.draw(st.binary(min_size=1, max_size=8)) + raw[i:]
    if kind == "extend":
        return raw + data.draw(st.binary(min_size=1, max_size=16))
    return data.draw(st.binary(max_size=256))


# --------------------------------------------------------------------------------------
# snapshots of live parties


def clone(party: Party) -> Party:
    """A deep copy of a party (its signer and verifier shared, points shared: immutable)."""
    dispatch = copy._deepcopy_dispatch  # type: ignore[attr-defined]
    had = Point in dispatch
    dispatch[Point] = lambda x, memo: x
    try:
        memo = {id(party.signer): party.signer, id(party.verifier): party.verifier}
        return copy.deepcopy(party, memo)
    finally:
        if not had:
            dispatch.pop(Point, None)


def party_state(party: Party) -> tuple:
    """What a rejected message must not change: round, done, and every inbox slot."""
    return (party.round, party.done,
            tuple((r, tuple(sorted((j, m.encode()) for j, m in box.broadcast.items())),
                   tuple(sorted((j, m.encode()) for j, m in box.direct.items())))
                  for r, box in sorted(party._inbox.items())))


@dataclass
class Snapshot:
    """``target`` has received every message of ``round`` except ``sender``'s (``held``)."""

    protocol: str
    round: int
    target: Party
    sender: int
    held: dict[str, Message]  # "broadcast" / "direct" -> the honest message held back
    seen: list[Message] = field(default_factory=list)  # honest messages the target already took


def lockstep(parties: dict[int, Party], target: int, sender: int) -> list[Snapshot]:
    """Run ``parties`` honestly round by round; before ``target`` gets ``sender``'s messages of
    a round, snapshot it. Returns one snapshot per round (the run finishes honestly)."""
    pending: list[Message] = []
    for p in parties.values():
        pending += p.start()
    snaps: list[Snapshot] = []
    P = parties[target]
    while pending:
        rnd = min(m.round for m in pending)
        now = [m for m in pending if m.round == rnd]
        pending = [m for m in pending if m.round != rnd]
        deliveries = []
        for m in now:
            for t in ([m.recipient] if m.recipient is not None else [q for q in parties if q != m.sender]):
                deliveries.append((t, m))
        held = {("broadcast" if m.recipient is None else "direct"): m
                for t, m in deliveries if t == target and m.sender == sender}
        first = [(t, m) for t, m in deliveries if not (t == target and m.sender == sender)]
        seen = [m for t, m in first if t == target]
        for t, m in first:
            pending += parties[t].receive(m.encode())
        if held:
            snaps.append(Snapshot(P.PROTOCOL, rnd, clone(P), sender, held, seen))
        for m in held.values():
            pending += P.receive(m.encode())
    assert all(p.done for p in parties.values()), "honest lock-step run did not finish"
    return snaps


def resign(signer: SoftwareSigner, m: Message, payload: bytes) -> Message:
    """``m`` with another payload, validly signed by its sender (an insider)."""
    bare = Message(m.version, m.session_id, m.protocol, m.round, m.sender, m.recipient, payload)
    return dataclasses.replace(bare, signature=signer.sign(bare.signing_digest()))


def split_payload(m: Message) -> tuple[bytes, list[EchoEntry]]:
    rp = wire.decode(m.payload, RoundPayload)
    return rp.body, rp.echo


def join_payload(body: bytes, echo: list[EchoEntry]) -> bytes:
    return wire.encode(RoundPayload(body, echo))
