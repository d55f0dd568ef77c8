"""secp256k1 encodings and the Fiat-Shamir transcript."""

from __future__ import annotations

import pytest

from appliance.errors import EncodingError
from appliance.tss.group import G, P, Q, Point, SeededRNG, hash_to_scalar, random_scalar, scalar_from_bytes
from appliance.tss.transcript import ProofContext, Transcript


def test_point_encoding_is_strict():
    rng = SeededRNG("pts")
    for _ in range(20):
        pt = G * random_scalar(rng)
        assert Point.from_bytes(pt.to_bytes()) == pt
    good = G.to_bytes()
    for bad in (b"", good[:-1], good + b"\x00", b"\x04" + good[1:], b"\x00" * 33,
                b"\x02" + P.to_bytes(32, "big"), b"\x02" + (P + 1).to_bytes(33, "big")[1:],
                b"\x02" + (5).to_bytes(32, "big")):  # x = 5 is not on secp256k1
        with pytest.raises(EncodingError):
            Point.from_bytes(bad)
    with pytest.raises(EncodingError):
        Point.INFINITY.to_bytes()


def test_point_arithmetic_with_infinity():
    assert G * 0 == Point.INFINITY
    assert G + (-G) == Point.INFINITY
    assert Point.INFINITY + G == G
    assert G * (Q + 3) == G * 3
    assert (G * 5) - (G * 2) == G * 3


def test_scalars():
    with pytest.raises(EncodingError):
        scalar_from_bytes(Q.to_bytes(32, "big"))
    with pytest.raises(EncodingError):
        scalar_from_bytes(b"\x01" * 31)
    assert scalar_from_bytes((Q - 1).to_bytes(32, "big")) == Q - 1


def test_hash_to_scalar_is_length_prefixed():
    assert hash_to_scalar(b"d", b"ab", b"c") != hash_to_scalar(b"d", b"a", b"bc")
    assert 0 <= hash_to_scalar(b"d", b"x") < Q


def test_transcript_encoding_is_unambiguous():
    def e(*items):
        tr = Transcript(b"dom", ProofContext(b"sid", 1, b"rid"))
        for label, v in items:
            tr.append(label, v)
        return tr.challenge_scalar("e")

    base = e(("a", 1), ("b", 2))
    assert base != e(("a", 12))
    assert base != e(("a", 1), ("b", -2))
    assert e(("a", b"\x01\x02")) != e(("a", b"\x01"), ("a", b"\x02"))
    assert e(("a", [1, 2])) != e(("a", [12]))
    assert e(("a", 1)) != e(("a", b"\x01"))  # types are tagged
    assert e(("a", 1)) != e(("b", 1))  # labels are bound


def test_transcript_binds_context():
    def c(ctx, domain=b"dom"):
        return Transcript(domain, ctx).append("x", 5).challenge_scalar("e")

    base = ProofContext(b"sid", 1, b"rid")
    assert c(base) == c(ProofContext(b"sid", 1, b"rid"))
    for other in (ProofContext(b"sie", 1, b"rid"), ProofContext(b"sid", 2, b"rid"),
                  ProofContext(b"sid", 1, b"rie"), ProofContext(b"sid", 1, b"rid", b"x")):
        assert c(other) != c(base)
    assert c(base, b"other") != c(base)


def test_challenges_in_range():
    tr = Transcript(b"dom")
    for _ in range(50):
        assert -Q <= tr.challenge_signed("e") <= Q
    bits = tr.challenge_bits("b", 128)
    assert len(bits) == 128 and set(bits) <= {0, 1}
    units = tr.challenge_units("u", 35, 10)
    assert all(u % 5 and u % 7 for u in units)
