"""Resharing keeps the public key, changes the committee, and retires removed members."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from appliance.errors import ParameterError
from appliance.tss import simulate
from appliance.tss.ecdsa import verify_with_libsecp256k1
from appliance.tss.group import G, Q, SeededRNG
from appliance.tss.protocol import ProtocolAbort
from appliance.tss.reshare import OldKeyInfo, ReshareConfirmed, ReshareParty
from appliance.tss.runner import Identities, run
from tests.adversary import corrupt, replace_field, together
from tests.conftest import prime_pool_from_test_file

D = hashlib.sha256(b"reshared").digest()


@pytest.mark.parametrize("new_members,t_new", [([0, 1, 2, 3], 3), ([1, 7], 2)], ids=["3of4", "2of2-new"])
def test_reshare_keeps_public_key(key_2of3, new_members, t_new):
    new = simulate.reshare(key_2of3[:2], new_members, t_new, rng=SeededRNG(str(new_members)),
                           primes=prime_pool_from_test_file(str(new_members)))
    assert [s.index for s in new] == new_members
    for s in new:
        assert s.public_key == key_2of3[0].public_key
        assert s.threshold == t_new and s.epoch == key_2of3[0].epoch + 1 and s.has_aux
    sig = simulate.sign(new[-t_new:], D, rng=SeededRNG("after-reshare"))
    assert verify_with_libsecp256k1(new[0].public_key, D, sig)
    # a removed or old-epoch share does not combine with the new committee
    old = key_2of3[0]
    x = (old.secret_share * 1 + 0) % Q
    assert G * x != new[0].public_key_point
    # (the old share's signer set is not `threshold` of its participants: refused up front)
    with pytest.raises(ParameterError, match="signer set"):
        simulate.presign([old, new[-1]] if t_new == 2 else [old] + new[-2:], rng=SeededRNG("mix"))


IDS = Identities(range(4), SeededRNG("reshare-adv"))


def parties(shares, new_members, t_new, seed):
    old = OldKeyInfo.of(shares[0])
    senders = [s.index for s in shares]
    by = {s.index: s for s in shares}
    every = sorted(set(senders) | set(new_members))
    return {i: ReshareParty(seed.encode(), i, old, senders, new_members, t_new, IDS.signers[i], IDS.directory,
                            SeededRNG(f"{seed}{i}"), share=by.get(i)) for i in every}


def test_old_only_member_gets_confirmation(key_2of3):
    out = run(parties(key_2of3[:2], [1, 2, 3], 2, "confirm"))
    assert isinstance(out[0], ReshareConfirmed)
    assert {out[j].public_key for j in (1, 2, 3)} == {key_2of3[0].public_key}


@pytest.mark.parametrize("case", ["constant term", "share", "confirmation"])
def test_reshare_misbehaviour_named(key_2of3, case):
    if case == "constant term":
        tamper = corrupt(IDS, ReshareParty, 1, 1, replace_field("F", lambda F: [F[0] + G] + F[1:]))
    elif case == "share":
        tamper = corrupt(IDS, ReshareParty, 1, 1, replace_field("sigma", lambda s: (s + 1) % Q), broadcast=False)
    else:
        tamper = corrupt(IDS, ReshareParty, 3, 2,
                         replace_field("psi", lambda p: dataclasses.replace(p, z=(p.z + 1) % Q)))
    bad = next(iter(tamper.corrupted))
    with pytest.raises(ProtocolAbort) as err:
        run(parties(key_2of3[:2], [0, 1, 2, 3], 3, case), tamper)
    assert err.value.culprits == [bad]


def test_reshare_names_every_sender_with_a_bad_share(key_3of5):
    """Senders 0 and 2 both deal a share that does not match their Feldman vector."""
    ids = Identities(range(6), SeededRNG("reshare-two-bad"))
    shares, new_members = key_3of5[:3], [2, 3, 4, 5]
    old, by = OldKeyInfo.of(shares[0]), {s.index: s for s in shares}
    every = sorted({0, 1, 2} | set(new_members))
    parties = {i: ReshareParty(b"two-bad", i, old, [0, 1, 2], new_members, 2, ids.signers[i], ids.directory,
                               SeededRNG(f"two-bad{i}"), share=by.get(i)) for i in every}
    tamper = together(*(corrupt(ids, ReshareParty, bad, 1, replace_field("sigma", lambda s: (s + 1) % Q),
                                broadcast=False, only_to=4) for bad in (0, 2)))
    with pytest.raises(ProtocolAbort) as err:
        run(parties, tamper)
    assert err.value.culprits == [0, 2]


@pytest.mark.parametrize("forge", ["threshold", "public share", "chain code"])
def test_newcomer_given_a_forged_old_state_stops_before_any_share(key_2of3, forge):
    """A newcomer takes the old key's public state from the coordinator; the old senders hash
    their own view of it into the round-1 setup they sign and echo, so a newcomer handed another
    state stops at round 1 (blaming nobody: it cannot tell who lied) and gets no share."""
    old = OldKeyInfo.of(key_2of3[0])
    if forge == "threshold":
        fake = dataclasses.replace(old, threshold=1)
    elif forge == "public share":
        fake = dataclasses.replace(old, public_shares={**old.public_shares, 2: old.public_shares[2] + G})
    else:
        fake = dataclasses.replace(old, chain_code=bytes(32))
    senders, new = [0, 1], [0, 1, 3]
    by = {s.index: s for s in key_2of3[:2]}
    ps = {i: ReshareParty(b"forged-" + forge.encode(), i, fake if i == 3 else old, senders, new, 2,
                          IDS.signers[i], IDS.directory, SeededRNG(f"forged{forge}{i}"), share=by.get(i))
          for i in sorted(set(senders) | set(new))}
    with pytest.raises(ProtocolAbort) as err:
        run(ps)
    assert "different session parameters" in str(err.value) and not err.value.culprits
