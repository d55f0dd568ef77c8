"""FROST key lifecycle: zero-sharing refresh, reshare to a new committee and threshold, and
BIP32 non-hardened derivation of schnorr-bip340 keys; signatures after each checked by
independent verifiers, bad dealers named with their check."""

from __future__ import annotations

import hashlib

import coincurve
import pytest
from bip32 import BIP32
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from appliance.errors import ParameterError
from appliance.tss.bip32 import DerivationError
from appliance.tss.frost import core, simulate
from appliance.tss.frost.bip32 import derive_key, derive_public
from appliance.tss.frost.keyshare import FrostKeyShare
from appliance.tss.frost.refresh import FrostRefreshParty
from appliance.tss.frost.reshare import FrostOldKey, FrostReshareConfirmed, FrostReshareParty
from appliance.tss.frost.suites import suite_for
from appliance.tss.frost.taproot import tagged_hash
from appliance.tss.group import SeededRNG
from appliance.tss.protocol import ProtocolAbort
from appliance.tss.runner import Identities, run
from tests.adversary import corrupt, replace_field

SCHEMES = ["schnorr-bip340", "ed25519"]
IDS = Identities(range(7), SeededRNG("frost-lifecycle-ids"))
MSG = hashlib.sha256(b"frost lifecycle").digest()


@pytest.fixture(scope="module", params=SCHEMES)
def key(request):
    return simulate.keygen(3, 2, request.param, rng=SeededRNG("lifecycle" + request.param), identities=IDS)


def verifies(pk: bytes, scheme: str, sig: bytes) -> bool:
    """Independent verifiers: libsecp256k1's BIP340 (coincurve), RFC 8032 (cryptography)."""
    if scheme == "schnorr-bip340":
        return coincurve.PublicKeyXOnly(pk).verify(sig, MSG)
    try:
        Ed25519PublicKey.from_public_bytes(pk).verify(sig, MSG)
        return True
    except Exception:
        return False


def interpolates_to_key(shares: list[FrostKeyShare], ref: FrostKeyShare) -> bool:
    """Σ λ_i·sk_i·G == PK over the identifiers of ``ref``'s key."""
    S = ref.suite
    G = S.G
    xs = [ref.identifier(s.index) for s in shares]
    acc = G.ZERO
    for s, x in zip(shares, xs):
        acc = G.add(acc, G.mul(core.derive_interpolating_value(S, xs, x), s.sk()))
    return G.base_mul(acc) == ref.PK()


def _other_scalar(scheme: str, data: bytes) -> bytes:
    G = suite_for(scheme).G
    return G.serialize_scalar(G.add(G.deserialize_scalar(data), G.ONE))


# -- refresh ---------------------------------------------------------------------------


def test_refresh_keeps_the_key_and_changes_every_share(key):
    scheme = key[0].scheme
    new = simulate.refresh(key, rng=SeededRNG("refresh"), identities=IDS)
    for old, fresh in zip(key, new):
        assert fresh.public_key == old.public_key and fresh.index == old.index
        assert fresh.secret_share != old.secret_share
        assert fresh.verification_shares[old.index] != old.verification_shares[old.index]
        assert fresh.epoch == old.epoch + 1
        assert FrostKeyShare.from_bytes(fresh.to_bytes()) == fresh
    assert interpolates_to_key([new[0], new[2]], new[0])
    # an old share is useless with a new one
    assert not interpolates_to_key([key[0], new[2]], new[0])
    sig = simulate.sign([new[0], new[2]], MSG, rng=SeededRNG("after-refresh"), identities=IDS)
    assert verifies(new[0].public_key, scheme, sig)


def _refresh(shares, tamper):
    return run({s.index: FrostRefreshParty(b"frost-refresh-sid", s, IDS.signers[s.index], IDS.directory,
                                           SeededRNG(f"refresh-{s.index}")) for s in shares}, tamper)


def test_refresh_bad_share_names_its_dealer(key):
    scheme = key[0].scheme
    tamper = corrupt(IDS, FrostRefreshParty, 2, 1, replace_field("share", lambda s: _other_scalar(scheme, s)),
                     broadcast=False, only_to=0)
    with pytest.raises(ProtocolAbort) as err:
        _refresh(key, tamper)
    assert (err.value.code, err.value.culprits, err.value.reason) == (
        "protocol_abort", [2], "party 2: check 3: share does not match the dealer's zero-sharing commitments")


def test_refresh_vector_of_wrong_length_is_named(key):
    tamper = corrupt(IDS, FrostRefreshParty, 1, 1, replace_field("commitments", lambda c: c + c))
    with pytest.raises(ProtocolAbort) as err:
        _refresh(key, tamper)
    assert (err.value.culprits, err.value.reason) == ([1], "party 1: check 1: expected exactly 1 commitments")


def test_refresh_refuses_a_partial_committee_and_a_1_of_n_key():
    ks = simulate.keygen(3, 2, "ed25519", rng=SeededRNG("partial"), identities=IDS)
    with pytest.raises(ParameterError) as err:
        simulate.refresh(ks[:2], identities=IDS)
    assert (err.value.code, str(err.value)) == ("bad_parameter", "a refresh needs every participant of the key")
    one = simulate.keygen(2, 1, "ed25519", rng=SeededRNG("one"), identities=IDS)
    with pytest.raises(ParameterError) as err:
        simulate.refresh(one, identities=IDS)
    assert str(err.value) == "a 1-of-n key has no shares to refresh (every share is the key)"


# -- reshare ---------------------------------------------------------------------------


def test_reshare_to_3_of_5_keeps_the_key(key):
    scheme = key[0].scheme
    new = simulate.reshare(key[:2], [0, 2, 4, 5, 6], 3, rng=SeededRNG("reshare"), identities=IDS)
    assert [s.index for s in new] == [0, 2, 4, 5, 6]
    for s in new:
        assert s.public_key == key[0].public_key
        assert (s.threshold, s.epoch, s.participants) == (3, key[0].epoch + 1, [0, 2, 4, 5, 6])
    assert interpolates_to_key(new[2:], new[0])
    assert not interpolates_to_key([key[0]] + new[3:], new[0])  # old share with new ones
    sig = simulate.sign(new[2:], MSG, rng=SeededRNG("after-reshare"), identities=IDS)
    assert verifies(key[0].public_key, scheme, sig)


def _reshare_parties(shares, new_members, t_new, sid=b"frost-reshare-sid"):
    old = FrostOldKey.of(shares[0])
    by = {s.index: s for s in shares}
    every = sorted(set(by) | set(new_members))
    return {i: FrostReshareParty(sid, i, old, sorted(by), new_members, t_new, IDS.signers[i], IDS.directory,
                                 SeededRNG(f"reshare-{i}"), share=by.get(i)) for i in every}


def test_old_only_sender_gets_a_confirmation(key):
    out = run(_reshare_parties(key[:2], [1, 3, 4], 2))
    assert out[0] == FrostReshareConfirmed(key[0].group_public_key, [1, 3, 4])
    assert {out[j].group_public_key for j in (1, 3, 4)} == {key[0].group_public_key}


def shifting_dealer(party: FrostReshareParty) -> FrostReshareParty:
    """An old sender that deals its Lagrange-weighted share plus one, consistently (its
    Feldman vector and its shares agree), which would move the key by G."""
    first = party._first_round

    def shifted():
        step = first()
        G = party.S.G
        step.coeffs[0] = G.add(step.coeffs[0], G.ONE)
        return step

    party._first_round = shifted  # type: ignore[method-assign]
    return party


def pass_through(bad: int):
    def tamper(msg, recipient):
        return msg

    tamper.corrupted = {bad}  # type: ignore[attr-defined]
    return tamper


@pytest.mark.parametrize("case", ["constant term", "share", "confirmation"])
def test_reshare_bad_dealer_is_named(key, case):
    scheme = key[0].scheme
    parties = _reshare_parties(key[:2], [1, 3, 4], 2)
    if case == "constant term":  # party 1 deals w_1 + 1: shares and vector consistent, g(0) shifted
        parties[1] = shifting_dealer(parties[1])
        tamper = pass_through(1)
        expect = "party 1: check 2: constant term is not the sender's Lagrange-weighted share of the key"
    elif case == "share":
        tamper = corrupt(IDS, FrostReshareParty, 1, 1, replace_field("share", lambda s: _other_scalar(scheme, s)),
                         broadcast=False, only_to=3)
        expect = "party 1: check 4: share does not match the dealer's Feldman commitments"
    else:
        tamper = corrupt(IDS, FrostReshareParty, 1, 2, replace_field("mu", lambda m: _other_scalar(scheme, m)))
        expect = "party 1: check 5: confirmation proof fails"
    with pytest.raises(ProtocolAbort) as err:
        run(parties, tamper)
    assert (err.value.code, err.value.culprits, err.value.reason) == ("protocol_abort", [1], expect)


def test_reshare_refuses_too_few_senders(key):
    with pytest.raises(ParameterError) as err:
        _reshare_parties(key[:1], [1, 2], 2)
    assert (err.value.code, str(err.value)) == ("bad_parameter", "resharing needs at least t holders of the current key")


# -- BIP32 -----------------------------------------------------------------------------

CHAIN = hashlib.sha256(b"chain code").digest()


@pytest.mark.parametrize("seed,odd", [("bip32-c", False), ("bip32-a", True)])
def test_bip32_child_matches_an_independent_bip32_and_signs(seed, odd):
    ks = simulate.keygen(3, 2, "schnorr-bip340", rng=SeededRNG(seed), identities=IDS)
    assert ks[0].PK().y_is_odd is odd  # both parities of the DKG's key are covered
    # the xpub is (chain code, 02 || x(PK)); the `bip32` package derives the child from it
    ref = BIP32(chaincode=CHAIN, pubkey=b"\x02" + ks[0].public_key).get_pubkey_from_path("m/0/7/2")
    child = derive_public("schnorr-bip340", ks[0].public_key, CHAIN, "m/0/7/2")
    assert child.public_key.to_bytes() == ref
    derived = derive_key(ks[1], CHAIN, "m/0/7/2")
    assert derived.group_public_key == ref and derived.public_key == ref[1:]
    sig = simulate.sign(ks[1:], MSG, derivation=(CHAIN, "m/0/7/2"), rng=SeededRNG("d"), identities=IDS)
    assert coincurve.PublicKeyXOnly(ref[1:]).verify(sig, MSG)
    # then the child's BIP341 key-path output key, tweak computed here from the BIP
    t = tagged_hash(b"TapTweak", ref[1:])
    Q = coincurve.PublicKeyXOnly(ref[1:])
    Q.tweak_add(t)
    sig = simulate.sign(ks[:2], MSG, derivation=(CHAIN, "m/0/7/2"), merkle_root=b"", rng=SeededRNG("e"),
                        identities=IDS)
    assert coincurve.PublicKeyXOnly(Q.format()).verify(sig, MSG)
    assert not coincurve.PublicKeyXOnly(ks[0].public_key).verify(sig, MSG)


def test_bip32_refusals():
    ed = simulate.keygen(2, 2, "ed25519", rng=SeededRNG("bip32-ed"), identities=IDS)
    with pytest.raises(ParameterError) as err:
        derive_key(ed[0], CHAIN, "m/0")
    assert (err.value.code, str(err.value)) == ("bad_parameter", "ed25519 keys have no standard non-hardened "
                                                "derivation (SLIP-0010 is hardened-only); create another key instead")
    with pytest.raises(ParameterError):
        derive_public("ed25519", ed[0].public_key, CHAIN, "m/0")
    tr = simulate.keygen(2, 2, "schnorr-bip340", rng=SeededRNG("bip32-h"), identities=IDS)
    with pytest.raises(DerivationError) as err:
        derive_key(tr[0], CHAIN, "m/0'")
    assert (err.value.code, str(err.value)) == (
        "bad_derivation_path", "hardened derivation needs the private key; only non-hardened paths are allowed")
