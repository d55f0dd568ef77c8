from __future__ import annotations


from appliance.tss.group import G, random_scalar
from appliance.tss.transcript import ProofContext
from appliance.tss.zk import sch
from tests.mutation import assert_rejected, mutations, point, rejected_by, scalar

#: the check of sch's docstring that rejects a change of each proof field
PROOF_CHECKS = {"A": point(1, 3), "z": scalar(1, 3)}

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
    assert_rejected(mutations(proof, []), lambda bad: sch.verify(CTX, X, bad), PROOF_CHECKS)
    with rejected_by(3):
        sch.verify(CTX, G * (x + 1), proof)
    for ctx in (ProofContext(b"t", 0, b"r"), ProofContext(b"s", 1, b"r"), ProofContext(b"s", 0, b"x")):
        with rejected_by(3):
            sch.verify(ctx, X, proof)
