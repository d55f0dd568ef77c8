from __future__ import annotations

import pytest

from appliance.errors import ProofError
from appliance.tss.group import G, random_scalar
from appliance.tss.transcript import ProofContext
from appliance.tss.zk import sch
from tests.mutation import mutations

CTX = ProofContext(b"s", 0, b"r")


def test_completeness_and_precommit(rng):
    for _ in range(20):
        x = random_scalar(rng)
        sch.verify(CTX, G * x, sch.prove(CTX, G * x, x, rng))
    pre = sch.commit(rng)
    x = random_scalar(rng)
    proof = sch.prove(CTX, G * x, x, precommitted=pre)
    assert proof.A == pre[1].A
    sch.verify(CTX, G * x, proof)


def test_mutations_and_context(rng):
    x = random_scalar(rng)
    X = G * x
    proof = sch.prove(CTX, X, x, rng)
    for desc, bad in mutations(proof, []):
        with pytest.raises(ProofError):
            sch.verify(CTX, X, bad)
            pytest.fail(desc)
    with pytest.raises(ProofError):
        sch.verify(CTX, G * (x + 1), proof)
    for ctx in (ProofContext(b"t", 0, b"r"), ProofContext(b"s", 1, b"r"), ProofContext(b"s", 0, b"x")):
        with pytest.raises(ProofError):
            sch.verify(ctx, X, proof)
