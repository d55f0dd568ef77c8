"""Π^elog: completeness, single-field soundness, binding to the context, wrong witnesses."""

from __future__ import annotations

import dataclasses


from appliance.tss.group import G, Q, Point, random_scalar
from appliance.tss.transcript import ProofContext
from appliance.tss.zk import elog
from tests.mutation import assert_rejected, mutations, point, rejected_by, scalar

#: the check of elog's docstring that rejects a change of each field: a commitment changes
#: the challenge, so the first equation (2.) fails
PROOF_CHECKS = {"A": point(1, 2), "N": point(1, 2), "B": point(1, 2), "z": scalar(1, 2), "u": scalar(1, 3)}
PUBLIC_CHECKS = {name: point(1, 2) for name in ("L", "M", "X", "Y", "h")}

CTX = ProofContext(b"session-1", prover=1, rid=b"rid-1")


def make_instance(rng, y=None, lam=None, h=None):
    """L = g^λ, M = g^y X^λ, Y = h^y (presigning: X the El-Gamal key Y_i, h = g)."""
    y = random_scalar(rng) if y is None else y
    lam = random_scalar(rng) if lam is None else lam
    h = G * random_scalar(rng) if h is None else h
    X = G * random_scalar(rng)
    pub = elog.ElogPublic(L=G * lam, M=G * y + X * lam, X=X, Y=h * y, h=h)
    return pub, elog.ElogWitness(y=y, lam=lam)


def test_completeness(rng):
    for y, lam, h in (
        (None, None, None),
        (None, None, G),  # presigning's h = g
        (1, 1, None),
        (Q - 1, Q - 1, None),
        (Q - 1, 1, G),
    ):
        pub, wit = make_instance(rng, y, lam, h)
        elog.verify(CTX, pub, elog.prove(CTX, pub, wit, rng))


def test_proof_mutations_rejected(rng):
    pub, wit = make_instance(rng)
    proof = elog.prove(CTX, pub, wit, rng)
    count = assert_rejected(mutations(proof, []), lambda bad: elog.verify(CTX, pub, bad), PROOF_CHECKS)
    assert count >= 26
    with rejected_by(1):
        elog.verify(CTX, pub, object())


def test_public_input_mutations_rejected(rng):
    pub, wit = make_instance(rng)
    proof = elog.prove(CTX, pub, wit, rng)
    count = assert_rejected(mutations(pub, []), lambda bad: elog.verify(CTX, bad, proof), PUBLIC_CHECKS)
    assert count == 20
    # presigning's order (Γ_i, g, B_1, B_2, Y_i) is not the proof's
    swapped = elog.ElogPublic(L=pub.Y, M=pub.h, X=pub.L, Y=pub.M, h=pub.X)
    with rejected_by(2):
        elog.verify(CTX, swapped, proof)


def test_bound_to_context(rng):
    pub, wit = make_instance(rng)
    proof = elog.prove(CTX, pub, wit, rng)
    elog.verify(CTX, pub, proof)
    for other in (
        ProofContext(b"session-2", 1, b"rid-1"),
        ProofContext(b"session-1", 2, b"rid-1"),
        ProofContext(b"session-1", 1, b"rid-2"),
        CTX.with_extra(b"round-2"),
    ):
        with rejected_by(2):  # another challenge
            elog.verify(other, pub, proof)


def test_wrong_witness_rejected(rng):
    pub, wit = make_instance(rng)
    # a wrong y shows in M (check 3), a wrong λ in L (check 2)
    for bad, check in (
        (dataclasses.replace(wit, y=(wit.y + 1) % Q), 3),
        (dataclasses.replace(wit, lam=(wit.lam + 1) % Q), 2),
        (elog.ElogWitness(y=wit.lam, lam=wit.y), 2),
    ):
        with rejected_by(check):
            elog.verify(CTX, pub, elog.prove(CTX, pub, bad, rng))


def test_statement_mismatch_rejected(rng):
    """M or Y built from another y than the other: no witness, no accepted proof."""
    pub, wit = make_instance(rng)
    for bad_pub, check in (
        (dataclasses.replace(pub, M=pub.M + G), 3),
        (dataclasses.replace(pub, Y=pub.Y + pub.h), 4),
    ):
        with rejected_by(check):
            elog.verify(CTX, bad_pub, elog.prove(CTX, bad_pub, wit, rng))


def test_identity_points_rejected(rng):
    """y = 0 or λ = 0 makes Y or L the point at infinity, which is never a public input."""
    for y, lam in ((0, 5), (5, 0)):
        pub, wit = make_instance(rng, y, lam)
        proof = elog.prove(CTX, pub, wit, rng)
        with rejected_by(1, match="not a curve point"):
            elog.verify(CTX, pub, proof)
    pub, wit = make_instance(rng)
    with rejected_by(1):
        elog.verify(CTX, dataclasses.replace(pub, h=Point.INFINITY), elog.prove(CTX, pub, wit, rng))
