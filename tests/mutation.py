"""Single-field mutations of proofs and public inputs, for soundness tests.

``mutations(obj, moduli)`` yields (description, mutated copy) for every field of a frozen
dataclass: small offsets, negation, adding a modulus (which canonical ranges must catch),
zero, a random value, and for points another point and the negation. Lists are mutated
one element at a time.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any, Iterator

from gmpy2 import mpz

from appliance.tss.group import Q, Point
from appliance.tss.paillier import PaillierPublicKey


def _int_variants(v: int, moduli: list[int], rnd: random.Random) -> Iterator[tuple[str, Any]]:
    v = int(v)
    yield "+1", v + 1
    yield "-1", v - 1
    yield "neg", -v
    yield "zero", 0
    yield "xor-bit", v ^ (1 << rnd.randrange(max(8, v.bit_length())))
    yield "+q", v + Q
    for m in moduli:
        yield f"+mod{m.bit_length()}", v + m
        yield f"mod-v{m.bit_length()}", m - v
    yield "random", rnd.getrandbits(max(16, v.bit_length()))


def _point_variants(p: Point, rnd: random.Random) -> Iterator[tuple[str, Any]]:
    yield "other-point", Point.generator_mul(rnd.randrange(1, Q))
    yield "neg-point", -p
    yield "double", p + p
    yield "infinity", Point.INFINITY


def _variants(v: Any, moduli: list[int], rnd: random.Random) -> Iterator[tuple[str, Any]]:
    if isinstance(v, bool):
        yield "flip", not v
    elif isinstance(v, (int, type(mpz(0)))):
        yield from _int_variants(v, moduli, rnd)
    elif isinstance(v, Point):
        yield from _point_variants(v, rnd)
    elif isinstance(v, PaillierPublicKey):
        yield "N+2", PaillierPublicKey(v.N + 2)
    elif isinstance(v, (list, tuple)):
        for i in rnd.sample(range(len(v)), min(len(v), 4)):
            for desc, new in _variants(v[i], moduli, rnd):
                copy = list(v)
                copy[i] = new
                yield f"[{i}]{desc}", type(v)(copy)
    elif dataclasses.is_dataclass(v):
        for desc, new in mutations(v, moduli, rnd):
            yield desc, new


def mutations(obj: Any, moduli: list[int], rnd: random.Random | None = None) -> Iterator[tuple[str, Any]]:
    """Every single-field mutation of the dataclass ``obj``."""
    rnd = rnd or random.Random(1)
    for f in dataclasses.fields(obj):
        if not f.init:
            continue
        value = getattr(obj, f.name)
        for desc, new in _variants(value, moduli, rnd):
            try:
                mutated = dataclasses.replace(obj, **{f.name: new})
            except Exception:  # a constructor that refuses the value is a rejection too
                continue
            if mutated != obj:
                yield f"{f.name}:{desc}", mutated
