"""FROST with pooled nonces (appliance/tss/frost/pooled.py): one online round over signed
pooled commitments; a coordinator's swapped or unsigned commitment is refused (check 7)."""

from __future__ import annotations

import dataclasses

import pytest

from appliance.tss.frost import pooled, simulate
from appliance.tss.frost.sign import NonceSpent, SigningRefused, new_nonces
from appliance.tss.group import SeededRNG
from appliance.tss.protocol import ProtocolAbort
from appliance.tss.runner import Identities, run

IDS = Identities(range(3), SeededRNG("frost-pooled-ids"))


@pytest.fixture(scope="module", params=["schnorr-bip340", "ed25519"])
def shares(request):
    return simulate.keygen(3, 2, request.param, rng=SeededRNG(request.param), identities=IDS)


def _pool(shares, rng):
    nonces = {s.index: new_nonces(s, rng) for s in shares}
    published = [pooled.publish(s, nonces[s.index], IDS.signers[s.index]) for s in shares]
    return nonces, published


def _parties(shares, nonces, published, message, root):
    return {s.index: pooled.FrostPooledSignParty(b"sid-pooled", s, message, published, nonces[s.index],
                                                 IDS.signers[s.index], IDS.directory, SeededRNG(b"r"),
                                                 merkle_root=root)
            for s in shares}


def test_one_online_round_gives_a_verifying_signature(shares):
    signers = shares[:2]
    root = b"" if shares[0].scheme == "schnorr-bip340" else None
    nonces, published = _pool(signers, SeededRNG(b"n"))
    out = run(_parties(signers, nonces, published, b"m" * 32, root))
    sig = set(out.values())
    assert len(sig) == 1 and len(sig.pop()) == 64
    assert all(n.spent for n in nonces.values())
    with pytest.raises(NonceSpent):  # the same nonces cannot sign a second time
        _parties(signers, nonces, published, b"m" * 32, root)[signers[0].index].start()


def test_a_swapped_or_unsigned_commitment_is_refused_by_the_signers(shares):
    signers = shares[:2]
    nonces, published = _pool(signers, SeededRNG(b"n2"))
    # the coordinator replaces party 1's commitment by one it made itself (its own nonces,
    # signed by itself: it has no other identity key)
    fake = new_nonces(signers[1], SeededRNG(b"coordinator"))
    swapped = [published[0], dataclasses.replace(published[1], D=fake.D, E=fake.E)]
    with pytest.raises(SigningRefused) as e:
        pooled.check_pooled(signers[0], swapped, IDS.directory)
    assert str(e.value) == "check 7: party 1's pooled commitment is not signed by it for this key"
    assert e.value.code == "signing_refused"
    # signed by the coordinator (party 0) but listed for party 1
    forged = pooled.publish(signers[0], fake, IDS.signers[0])
    with pytest.raises(SigningRefused, match="check 7: party 1's"):
        pooled.check_pooled(signers[0], [published[0], dataclasses.replace(forged, index=1)], IDS.directory)
    # a commitment of another key (its fingerprint differs) is refused too
    other = simulate.keygen(3, 2, signers[0].scheme, rng=SeededRNG(b"other"), identities=IDS)
    with pytest.raises(SigningRefused, match="check 7: party 0's"):
        pooled.check_pooled(other[0], published, IDS.directory)
    assert not any(n.spent for n in nonces.values())


def test_pooled_commitment_json_round_trip_and_bad_sizes(shares):
    _, published = _pool(shares[:1], SeededRNG(b"n3"))
    c = published[0]
    assert pooled.PooledCommitment.from_json(c.to_json()) == c
    with pytest.raises(ValueError):
        pooled.PooledCommitment.from_json(dict(c.to_json(), signature="00"))
    with pytest.raises(ValueError):
        pooled.PooledCommitment.from_json(dict(c.to_json(), index="1"))


@pytest.mark.parametrize("change", ["message", "merkle_root", "commitment_list"])
def test_a_coordinator_changing_message_tweak_or_list_for_one_signer_gets_no_signature(change):
    """Pooled signing of a 3-of-3 BIP340 key, coordinator party 0: it shows signer 2 another
    message, another Taproot merkle root, or another list (its own second commitment, validly
    signed by itself, so check 7 passes). Each signer's z_i is over what it was shown (its pair
    used once); the setup hashes differ, so every party stops without blame and no signature is
    produced: z_i over different lists or messages never combine into one for the coordinator."""
    ks = simulate.keygen(3, 3, "schnorr-bip340", rng=SeededRNG(b"pooled-3of3"), identities=IDS)
    nonces, published = _pool(ks, SeededRNG(b"n4"))
    second = pooled.publish(ks[0], new_nonces(ks[0], SeededRNG(b"spare")), IDS.signers[0])
    messages, roots, lists = {2: b"x" * 32}, {2: b"\x01" * 32}, {2: [second, *published[1:]]}
    parties = {
        s.index: pooled.FrostPooledSignParty(
            b"sid-pooled-3", s, messages.get(s.index, b"m" * 32) if change == "message" else b"m" * 32,
            lists.get(s.index, published) if change == "commitment_list" else published,
            nonces[s.index],
            IDS.signers[s.index], IDS.directory, SeededRNG(b"r"),
            merkle_root=roots.get(s.index, b"") if change == "merkle_root" else b"")
        for s in ks}
    with pytest.raises(ProtocolAbort) as err:
        run(parties)
    assert (err.value.culprits, err.value.round) == ([], 1)
    assert err.value.reason in {f"parties {d} were given different session parameters"
                                for d in ([0, 1], [2])}
    assert all(n.spent for n in nonces.values())
