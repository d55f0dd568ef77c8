"""Aux-info and refresh: parameters proven, refresh keeps the key and retires old shares."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from appliance.errors import EncodingError
from appliance.tss import simulate
from appliance.tss.aux import AuxParty, generate_aux_keys
from appliance.tss.ecdsa import verify_with_libsecp256k1
from appliance.tss.group import G, Q, SeededRNG
from appliance.tss.keyshare import PooledAux
from appliance.tss.protocol import ProtocolAbort
from appliance.tss.runner import Identities, run
from tests.adversary import corrupt, replace_field, together
from tests.conftest import prime_pool_from_test_file

IDS = Identities(range(3), SeededRNG("aux-adversary"))


@pytest.fixture(scope="module")
def refreshed(key_2of3):
    return simulate.refresh(key_2of3, rng=SeededRNG("refresh"), primes=prime_pool_from_test_file("refresh"))


def test_aux_info_is_complete(key_2of3):
    for s in key_2of3:
        assert s.has_aux and s.paillier_bits == 2048
        assert s.aux_secret.paillier().N == s.aux[s.index].N
        assert len({a.N for a in s.aux.values()} | {a.Nhat for a in s.aux.values()}) == 6
        assert s.public_fingerprint() == key_2of3[0].public_fingerprint()


def test_refresh_keeps_public_key_and_changes_shares(key_2of3, refreshed):
    for old, new in zip(key_2of3, refreshed):
        assert new.public_key == old.public_key
        assert new.epoch == old.epoch + 1
        assert new.secret_share != old.secret_share
        assert new.public_shares[new.index] == G * new.secret_share
        assert new.aux[new.index].N != old.aux[old.index].N
    d = hashlib.sha256(b"after refresh").digest()
    sig = simulate.sign(refreshed[1:], d, rng=SeededRNG("after"))
    assert verify_with_libsecp256k1(refreshed[0].public_key, d, sig)


def test_old_and_new_epoch_shares_do_not_mix(key_2of3, refreshed):
    # Interpolating an old share with a new one does not give the key ...
    old, new = key_2of3[0], refreshed[1]
    x = (old.secret_share * old.lagrange([0, 1]) + new.secret_share * new.lagrange([0, 1])) % Q
    assert G * x != old.public_key_point
    # ... and the protocol refuses to start a presignature across epochs.
    with pytest.raises(ProtocolAbort) as err:
        simulate.presign([old, new], rng=SeededRNG("mix"))
    assert "different session parameters" in err.value.reason and err.value.culprits == []


def aux_parties(shares, refresh, seed):
    pool = prime_pool_from_test_file(f"aux-{seed}")
    return {s.index: AuxParty(b"aux-" + seed.encode(), s, generate_aux_keys(2048, pool, SeededRNG(seed)),
                              IDS.signers[s.index], IDS.directory, SeededRNG(f"{seed}{s.index}"),
                              refresh=refresh) for s in shares}


AUX_CASES = {
    "r1 commitment": (1, True, replace_field("V", lambda v: bytes(32))),
    "r2 modulus not committed": (2, True, replace_field("N", lambda N: N + 2)),
    "r2 prm proof": (2, True, replace_field("psi_prm", lambda p: dataclasses.replace(p, z=(p.z[0] + 1,) + p.z[1:]))),
    "r2 refresh share": (2, False, replace_field("sigma", lambda s: (s + 1) % Q)),
    "r3 mod proof": (3, True, replace_field("psi_mod", lambda p: dataclasses.replace(p, w=p.w + 1))),
    "r3 fac proof": (3, False, replace_field("psi_fac", lambda p: dataclasses.replace(p, z1=p.z1 + 1))),
}


@pytest.mark.parametrize("case", sorted(AUX_CASES))
def test_aux_misbehaviour_names_the_party(key_2of3, case):
    rnd, bcast, mutate = AUX_CASES[case]
    with pytest.raises(ProtocolAbort) as err:
        run(aux_parties(key_2of3, True, case), corrupt(IDS, AuxParty, 2, rnd, mutate, broadcast=bcast))
    assert err.value.culprits == [2], err.value


class ShortModulus(AuxParty):
    """Commits to and reveals one of its primes as its Paillier modulus."""

    def _first_round(self):
        first = super()._first_round()
        first.fields["N"] = int(self.keys.paillier.p)
        return first


def test_aux_names_every_party_with_a_bad_proof(key_2of3):
    """Parties 1 and 2 both send a bad Π^mod in round 3: party 0 names both."""
    mutate = AUX_CASES["r3 mod proof"][2]
    tamper = together(*(corrupt(IDS, AuxParty, bad, 3, mutate) for bad in (1, 2)))
    parties = aux_parties(key_2of3, False, "two-bad")
    with pytest.raises(ProtocolAbort) as err:
        run(parties, tamper)
    assert err.value.culprits == [1, 2] and err.value.round == 3
    assert "party 1: Π^mod failed: check 2:" in err.value.reason  # (w|N) = -1 no longer holds, or w
    assert "party 2: Π^mod failed: check 2:" in err.value.reason


def test_aux_rejects_a_short_modulus(key_2of3):
    """A party that commits to and reveals a 1024-bit Paillier modulus is named."""
    parties = aux_parties(key_2of3, False, "short")
    parties[1] = ShortModulus(b"aux-short", key_2of3[1], parties[1].keys, IDS.signers[1], IDS.directory,
                              SeededRNG("short1"))

    def tamper(msg, recipient):
        return msg

    tamper.corrupted = {1}
    with pytest.raises(ProtocolAbort) as err:
        run(parties, tamper)
    assert err.value.culprits == [1]
    assert "bits" in err.value.reason


def _pooled_from(shares) -> dict:
    """Each party's aux-info of ``shares`` as a pooled one (no new aux session: the same
    Paillier and ring-Pedersen data, a fresh joint rid)."""
    rid = SeededRNG("pooled rid").token_bytes(32)
    return {s.index: PooledAux(s.index, s.participants, s.paillier_bits, dict(s.aux), s.aux_secret, rid)
            for s in shares}


def test_a_pooled_aux_info_binds_only_a_fresh_share_of_its_committee(key_2of3):
    pooled = _pooled_from(key_2of3)
    with pytest.raises(EncodingError, match="not for this key share's committee"):
        pooled[0].bind(key_2of3[0])  # has its aux-info already
    fresh = simulate.keygen_with_aux(pooled, 2, rng=SeededRNG("fresh"))[1]
    bare = dataclasses.replace(fresh, aux={}, aux_secret=None, paillier_bits=0)
    with pytest.raises(EncodingError, match="not for this key share's committee"):
        pooled[0].bind(bare)  # party 1's share, party 0's aux-info
    other = {j: dataclasses.replace(p, parties=[0, 1]) for j, p in pooled.items()}
    with pytest.raises(EncodingError, match="not for this key share's committee"):
        other[1].bind(bare)
    with pytest.raises(EncodingError, match="does not match its own secret"):
        PooledAux.from_bytes(dataclasses.replace(pooled[0], index=1).to_bytes())


def test_a_dkg_whose_parties_were_given_different_pooled_aux_info_stops_at_the_echo(key_2of3):
    """A coordinator naming aux-info A to parties 0 and 1 and B to party 2: the fingerprint is
    in the DKG's setup hash, so the round-1 echo stops the session, blaming nobody and naming
    the parties that differ (before, each bound its own and the key could never presign)."""
    pooled = _pooled_from(key_2of3)
    pooled[2] = dataclasses.replace(pooled[2], rid=SeededRNG("another rid").token_bytes(32))
    with pytest.raises(ProtocolAbort) as err:
        simulate.keygen_with_aux(pooled, 2, rng=SeededRNG("split aux"))
    assert (err.value.protocol, err.value.round, err.value.culprits) == ("keygen", 1, [])
    assert err.value.reason in ("parties [2] were given different session parameters",
                                "parties [0, 1] were given different session parameters")


@pytest.fixture(scope="module")
def pooled_pair():
    """A key-independent aux session (AuxParty.pooled) of parties 0 and 1."""
    return simulate.pooled_aux_info([0, 1], paillier_bits=2048, rng=SeededRNG("pooled session"),
                                    primes=prime_pool_from_test_file("pooled-session"), identities=IDS)


def test_a_pooled_aux_session_serves_two_dkg_keys_that_presign_and_sign(pooled_pair):
    assert sorted(pooled_pair) == [0, 1] and pooled_pair[0].fingerprint() == pooled_pair[1].fingerprint()
    assert pooled_pair[0].aux == pooled_pair[1].aux and pooled_pair[0].secret.p != pooled_pair[1].secret.p
    for i in (0, 1):
        assert PooledAux.from_bytes(pooled_pair[i].to_bytes()).fingerprint() == pooled_pair[0].fingerprint()
    keys = [simulate.keygen_with_aux(pooled_pair, 2, rng=SeededRNG(f"pooled key {k}")) for k in "ab"]
    assert keys[0][0].public_key != keys[1][0].public_key and keys[0][0].rid != keys[1][0].rid  # proofs' contexts
    assert keys[0][0].aux == keys[1][0].aux and all(s.has_aux and s.paillier_bits == 2048 for s in keys[0] + keys[1])
    for k, shares in zip("ab", keys):
        d = hashlib.sha256(b"pooled key " + k.encode()).digest()
        presigs = simulate.presign(shares, rng=SeededRNG(f"presign {k}"))
        sig = simulate.sign_with_presignature(shares, presigs, d, rng=SeededRNG(f"sign {k}"))
        assert verify_with_libsecp256k1(shares[0].public_key, d, sig)


def test_a_party_sending_refresh_data_in_a_pooled_session_is_named():
    tamper = corrupt(IDS, AuxParty, 1, 2, replace_field("sigma", lambda s: 5), broadcast=False)
    with pytest.raises(ProtocolAbort) as err:
        simulate.pooled_aux_info([0, 1], paillier_bits=2048, rng=SeededRNG("pooled refresh data"),
                                 primes=prime_pool_from_test_file("pooled-refresh"), identities=IDS, tamper=tamper)
    assert (err.value.round, err.value.culprits) == (2, [1])
    assert err.value.reason == "party 1: sent refresh data in an aux-only session"
