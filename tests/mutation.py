"""Single-field mutations of proofs and public inputs, for soundness tests.

``mutations(obj, moduli)`` yields (description, mutated copy) for every field of a frozen
dataclass: small offsets, negation, adding a modulus (which canonical ranges must catch),
zero, a random value, and for points another point and the negation. Lists are mutated
one element at a time.

``assert_rejected(cases, verify, expected)`` checks that each mutation is rejected by the
check its proof's docstring numbers for it (``ProofError.check``), and ``rejected_by(n)`` is
``pytest.raises(ProofError)`` for one case.
"""

from __future__ import annotations

import dataclasses
import random
import re
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, Mapping, Union

import pytest
from gmpy2 import mpz

from appliance.errors import ProofError

from appliance.tss.group import Q, Point
from appliance.tss.paillier import PaillierPublicKey, in_unit_group


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


# --------------------------------------------------------------------------------------
# which check rejects a mutation
#
# A table maps each field to the check that must reject any change of it: a number, or a
# rule of the mutated value (for a list field, of the mutated entry). The rules below say
# "a value outside its canonical range fails the range check, any other the equation".

Rule = Union[int, Callable[[Any], int]]


def _then(then: Rule, v: Any) -> int:
    return then if isinstance(then, int) else then(v)


def unit(modulus: int, range_check: int, then: Rule) -> Callable[[Any], int]:
    """For a value that must lie in Z*_modulus."""
    return lambda v: _then(then, v) if in_unit_group(int(v), int(modulus)) else range_check


def residue(modulus: int, range_check: int, then: Rule) -> Callable[[Any], int]:
    """For a value that must lie in [0, modulus)."""
    return lambda v: _then(then, v) if 0 <= v < modulus else range_check


def signed(bits: int, range_check: int, then: Rule, scale: int = 1) -> Callable[[Any], int]:
    """For a value that must lie in ±2^bits · scale."""
    return lambda v: _then(then, v) if abs(int(v)) <= (1 << bits) * int(scale) else range_check


def scalar(range_check: int, then: Rule) -> Callable[[Any], int]:
    """For a value that must lie in [0, q)."""
    return residue(Q, range_check, then)


def point(range_check: int, then: Rule) -> Callable[[Any], int]:
    """For a curve point (not infinity)."""
    return lambda v: range_check if v.is_infinity else _then(then, v)


def bit(range_check: int, then: Rule) -> Callable[[Any], int]:
    return lambda v: _then(then, v) if v in (0, 1) else range_check


def same_mod_q(originals: Iterable[int], same: int, other: int) -> Callable[[Any], int]:
    """For an integer response that also appears as an exponent of a curve point: a change by
    a multiple of q (from the original value, or from one of a list's original entries)
    leaves the group equation true, so a later (Paillier) equation fails."""
    residues = {int(o) % Q for o in originals}
    return lambda v: same if int(v) % Q in residues else other


def check_for(expected: Mapping[str, Rule], desc: str, bad: Any) -> int:
    """The number of the check that must reject mutation ``desc`` ("field:variant" or
    "field:[i]variant") whose result is ``bad``."""
    field, variant = desc.split(":", 1)
    rule = expected[field]
    if isinstance(rule, int):
        return rule
    value = getattr(bad, field)
    index = re.match(r"\[(\d+)\]", variant)
    return rule(value[int(index.group(1))] if index else value)


def assert_rejected(cases: Iterable[tuple[str, Any]], verify: Callable[[Any], None],
                    expected: Mapping[str, Rule]) -> int:
    """Every mutated value in ``cases`` fails ``verify`` with ProofError, at the check that
    ``expected`` names for it; returns how many there were. Lists every wrong one at once."""
    wrong: dict[str, str] = {}
    count = 0
    for desc, bad in cases:
        try:
            verify(bad)
        except ProofError as exc:
            want = check_for(expected, desc, bad)
            if exc.check != want:
                wrong[desc] = f"check {exc.check} (expected {want}): {exc}"
        else:
            wrong[desc] = "accepted"
        count += 1
    assert not wrong, "\n".join(f"{d}: {w}" for d, w in sorted(wrong.items()))
    return count


@contextmanager
def rejected_by(check: int, match: str | None = None) -> Iterator[Any]:
    """``pytest.raises(ProofError)`` that also asserts the number of the failed check."""
    with pytest.raises(ProofError, match=match) as err:
        yield err
    assert err.value.check == check, f"rejected by {err.value}, expected check {check}"
