"""Review findings: blame and termination bugs around the proofs (fixed; kept as regressions).

1. Presign identification (Fig. 9): the round-4 broadcast of an *honest* party with t >= 24
   signers at the default 3072-bit modulus (t >= 35 at 2048) was larger than
   ``wire.MAX_PAYLOAD_BYTES``; every receiver rejected it and named the honest sender.
   Now presign refuses more than ``MAX_SIGNERS`` (16) signers, and 16 fit.
2. Keygen does not bind its public parameters (threshold) in the echoed first round: parties
   that were handed different thresholds (e.g. by a malicious coordinator) name an honest party.
3. Resharing's confirmation round is not agreed on: a malicious new member can send a valid
   Π^sch to the old-only senders (who then hold ``ReshareConfirmed`` and may delete their old
   shares) and an invalid one to an honest new member (who aborts and keeps no new share).
"""

from __future__ import annotations

import dataclasses

import pytest

from appliance.errors import ParameterError
from appliance.tss import wire
from appliance.tss.group import Q, SeededRNG
from appliance.tss.keygen import KeygenParty
from appliance.tss.params import security_params
from appliance.tss.presign import MAX_SIGNERS, PresignParty, R4Bcast
from appliance.tss.protocol import Party, ProtocolAbort
from appliance.tss.reshare import OldKeyInfo, ReshareConfirmed, ReshareParty
from appliance.tss.runner import Identities, run
from appliance.tss.transcript import ProofContext
from appliance.tss.zk import aff_g_star, dec
from tests.adversary import corrupt, replace_field


# --------------------------------------------------------------------------------------
# 1. an honest identification message does not fit the payload limit


class _PresignEnvelope(Party):
    """Only the presign envelope (signing, decoding); no protocol logic."""

    PROTOCOL = PresignParty.PROTOCOL
    ROUNDS = PresignParty.ROUNDS


def test_too_many_signers_refused_up_front(key_2of3):
    ids = Identities(range(17), SeededRNG("many"))
    with pytest.raises(ParameterError, match="at most"):
        PresignParty(b"many", key_2of3[0], list(range(MAX_SIGNERS + 1)), ids.signers[0], ids.directory,
                     SeededRNG("many"))


@pytest.mark.slow
def test_honest_identification_message_decodes_for_max_signers(paillier_keys):
    from tests.tss.test_zk_aff_g import make_instance as aff_instance
    from tests.tss.test_zk_dec import make_instance as dec_instance

    t = MAX_SIGNERS  # the largest signer set presign accepts
    bits = 3072  # DEFAULT_PAILLIER_BITS
    params = security_params(bits)  # the real m = 128
    rng = SeededRNG("review-r4-size")
    sk_me, sk_other = paillier_keys[bits]
    ctx = ProofContext(b"presig-review", prover=0, rid=b"rid")

    # genuine proofs, made exactly as an honest party makes them in round 4
    pub_a, wit_a = aff_instance(rng, sk_other, sk_me)
    psi_aff = aff_g_star.prove(ctx, pub_a, wit_a, params, rng, paillier_sk=sk_me)
    pub_d, wit_d = dec_instance(rng, sk_me, n=t)
    psi_dec = dec.prove(ctx, pub_d, wit_d, params, rng, paillier_sk=sk_me)
    # one Π^aff-g* per other signer (the same size for every one of them)
    body = R4Bcast("delta", psi_dec, {j: psi_aff for j in range(1, t)})

    ids = Identities(range(t), SeededRNG("review-r4-ids"))
    sender = _PresignEnvelope(b"presig-review", 0, range(t), ids.signers[0], ids.directory, rng)
    receiver = _PresignEnvelope(b"presig-review", 1, range(t), ids.signers[1], ids.directory, rng)
    msg = sender._sign(4, None, wire.encode(body, R4Bcast), [])

    # the honest sender's signed round-4 broadcast must decode
    decoded, _ = receiver._unwrap(msg, R4Bcast)
    assert decoded.outcome == "delta"


# --------------------------------------------------------------------------------------
# 2. keygen with inconsistent public parameters names an honest party


def test_keygen_threshold_mismatch_blames_nobody():
    ids = Identities(range(3), SeededRNG("review-kg-ids"))
    thresholds = {0: 2, 1: 2, 2: 3}  # every party runs honest code on the spec it was given
    parties = {i: KeygenParty(b"review-kg", i, [0, 1, 2], thresholds[i], ids.signers[i], ids.directory,
                              SeededRNG(f"review-kg-{i}"))
               for i in range(3)}
    with pytest.raises(ProtocolAbort) as err:
        run(parties)
    # no party misbehaved: the session must stop without naming anyone
    assert err.value.culprits == [], err.value


# --------------------------------------------------------------------------------------
# 3. resharing: old senders confirm although a new member aborted


def test_reshare_confirmation_is_agreed(key_2of3):
    shares = key_2of3[:2]  # old senders 0, 1 (not in the new committee)
    new_members, t_new = [2, 3], 2  # 3 is malicious
    ids = Identities(range(4), SeededRNG("review-reshare-ids"))
    old = OldKeyInfo.of(shares[0])
    by = {s.index: s for s in shares}
    parties = {i: ReshareParty(b"review-reshare", i, old, [0, 1], new_members, t_new, ids.signers[i],
                               ids.directory, SeededRNG(f"review-reshare-{i}"), share=by.get(i))
               for i in range(4)}
    # party 3 sends a broken confirmation only to the honest new member 2
    tamper = corrupt(ids, ReshareParty, 3, 2,
                     replace_field("psi", lambda p: dataclasses.replace(p, z=(p.z + 1) % Q)), only_to=2)
    with pytest.raises(ProtocolAbort) as err:
        run(parties, tamper)
    assert err.value.culprits == [3]
    assert not parties[2].done  # the honest new member keeps no new share
    # ...so no old sender may be told that it can delete its share
    confirmed = [i for i in (0, 1) if parties[i].done and isinstance(parties[i].result, ReshareConfirmed)]
    assert confirmed == [], f"old senders {confirmed} confirmed while new member 2 aborted"
