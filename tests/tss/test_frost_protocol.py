"""FROST DKG and signing as sans-I/O protocols: correctness for every scheme, signatures
checked by independent verifiers, and every failure naming the party its signed message
proves at fault (or refusing the coordinator, or the reused nonce)."""

from __future__ import annotations

import copy
import dataclasses
import itertools

import coincurve
import nacl.signing
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from appliance.errors import ParameterError
from appliance.tss import wire
from appliance.tss.frost import core, simulate
from appliance.tss.frost.bip32 import derive_key
from appliance.tss.frost.dkg import FrostDkgParty
from appliance.tss.frost.keyshare import FrostKeyShare
from appliance.tss.frost.suites import suite_for
from appliance.tss.frost.sign import (
    FrostSignParty,
    NonceSpent,
    SigningPackage,
    SigningRefused,
    aggregate_package,
    new_nonces,
    sign_package,
)
from appliance.tss.group import SeededRNG
from appliance.tss.protocol import ProtocolAbort, RoundPayload
from appliance.tss.runner import Identities, run
from tests.adversary import corrupt, replace_field

SCHEMES = ["schnorr-bip340", "ed25519", "frost-secp256k1"]
IDS = Identities(range(5), SeededRNG("frost-ids"))


@pytest.fixture(scope="module", params=SCHEMES)
def shares(request):
    return simulate.keygen(3, 2, request.param, rng=SeededRNG(request.param), identities=IDS)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_dkg_3_of_5_shares_interpolate(scheme):
    out = simulate.keygen(5, 3, scheme, rng=SeededRNG(b"5"), identities=IDS)
    S = out[0].suite
    G = S.G
    assert len({s.group_public_key for s in out}) == 1
    assert len({s.public_fingerprint() for s in out}) == 1
    for subset in itertools.combinations(range(5), 3):
        ids = [out[0].identifier(i) for i in subset]
        sk = G.ZERO
        for i in subset:
            lam = core.derive_interpolating_value(S, ids, out[0].identifier(i))
            sk = G.add(sk, G.mul(lam, out[i].sk()))
        assert G.serialize_element(G.base_mul(sk)) == out[0].group_public_key
    assert FrostKeyShare.from_bytes(out[2].to_bytes()) == out[2]
    assert "secret" not in repr(out[2]) and out[2].secret_share.hex() not in repr(out[2])


def test_signatures_verify_in_independent_implementations(shares):
    msg = b"independent verifiers"
    for signers in ([0, 1], [1, 2], [0, 2]):
        sig = simulate.sign([shares[i] for i in signers], msg, identities=IDS)
        S = shares[0].suite
        assert core.verify_signature(S, msg, sig, shares[0].PK())
        if shares[0].scheme == "ed25519":
            assert len(sig) == 64
            Ed25519PublicKey.from_public_bytes(shares[0].public_key).verify(sig, msg)  # RFC 8032
            assert nacl.signing.VerifyKey(shares[0].public_key).verify(msg, sig) == msg
        elif shares[0].scheme == "schnorr-bip340":
            assert coincurve.PublicKeyXOnly(shares[0].public_key).verify(sig, msg)


# -- DKG adversaries -------------------------------------------------------------------


def _dkg_parties(scheme, n=3, t=2, sid=b"frost-dkg-session"):
    return {i: FrostDkgParty(sid, i, list(range(n)), t, scheme, IDS.signers[i], IDS.directory,
                             SeededRNG(f"dkg-{i}")) for i in range(n)}


def _run_dkg(scheme, tamper):
    return run(_dkg_parties(scheme), tamper)


@pytest.mark.parametrize("scheme", ["schnorr-bip340", "ed25519"])
def test_dkg_bad_proof_of_knowledge_is_named(scheme):
    tamper = corrupt(IDS, FrostDkgParty, 1, 1, replace_field("mu", lambda mu: _other_scalar(scheme, mu)))
    with pytest.raises(ProtocolAbort) as err:
        _run_dkg(scheme, tamper)
    assert err.value.culprits == [1]
    assert err.value.reason == "party 1: check 2: proof of knowledge of the constant term fails"


def test_dkg_copied_commitment_and_proof_is_named():
    """Party 2 broadcasts party 0's vector and proof as its own (a rogue-key attempt): the
    proof is bound to its prover, so check 2 names party 2."""
    seen = {}

    def tamper(msg, recipient):
        if msg.round == 1 and msg.sender == 0:
            seen["body"] = msg
        return msg


    run(_dkg_parties("ed25519", sid=b"copy-source"), tamper)
    copied = wire.decode(wire.decode(seen["body"].payload, RoundPayload).body, FrostDkgParty.ROUNDS[1].broadcast)
    steal = corrupt(IDS, FrostDkgParty, 2, 1, lambda body: dataclasses.replace(
        copied, setup=body.setup))
    with pytest.raises(ProtocolAbort) as err:
        run(_dkg_parties("ed25519", sid=b"copy-source"), steal)
    assert err.value.culprits == [2]
    assert err.value.reason == "party 2: check 2: proof of knowledge of the constant term fails"


@pytest.mark.parametrize("scheme", SCHEMES)
def test_dkg_bad_share_names_its_sender(scheme):
    tamper = corrupt(IDS, FrostDkgParty, 2, 2, replace_field("share", lambda s: _other_scalar(scheme, s)),
                     broadcast=False)
    with pytest.raises(ProtocolAbort) as err:
        _run_dkg(scheme, tamper)
    assert err.value.culprits == [2]
    assert err.value.reason == "party 2: check 4: share does not match the sender's Feldman commitments"


def test_dkg_short_feldman_vector_is_named():
    tamper = corrupt(IDS, FrostDkgParty, 0, 1, replace_field("commitments", lambda c: c[:1]))
    with pytest.raises(ProtocolAbort) as err:
        _run_dkg("ed25519", tamper)
    assert err.value.culprits == [0]
    assert err.value.reason == "party 0: check 1: expected exactly 2 commitments"


def _other_scalar(scheme, enc: bytes) -> bytes:
    G = suite_for(scheme).G
    return G.serialize_scalar(G.add(G.deserialize_scalar(enc), G.ONE))


# -- signing adversaries ---------------------------------------------------------------


def test_bad_signature_share_is_named(shares):
    scheme = shares[0].scheme
    tamper = corrupt(IDS, FrostSignParty, 1, 2, replace_field("z", lambda z: _other_scalar(scheme, z)))
    with pytest.raises(ProtocolAbort) as err:
        simulate.sign(shares, b"m", tamper=tamper, identities=IDS)
    assert err.value.culprits == [1]
    assert err.value.round == 2
    assert err.value.reason == ("party 1: check 6: signature share does not verify against the "
                                "signer's verification share")


def test_bad_share_is_named_under_the_taproot_tweak():
    ks = simulate.keygen(3, 2, "schnorr-bip340", rng=SeededRNG(b"tw"), identities=IDS)
    tamper = corrupt(IDS, FrostSignParty, 0, 2, replace_field("z", lambda z: _other_scalar("schnorr-bip340", z)))
    with pytest.raises(ProtocolAbort) as err:
        simulate.sign(ks, b"m", merkle_root=b"", tamper=tamper, identities=IDS)
    assert err.value.culprits == [0]


def test_message_changed_for_one_signer_stops_before_any_share():
    """The coordinator hands signer 1 another message: the session stops in round 1, with
    nobody blamed, and no signature share was ever sent."""
    ks = simulate.keygen(3, 2, "ed25519", rng=SeededRNG(b"msg"), identities=IDS)
    sent_rounds = []

    def watch(msg, recipient):
        sent_rounds.append(msg.round)
        return msg

    with pytest.raises(ProtocolAbort) as err:
        simulate.sign(ks, b"pay alice 1", messages={1: b"pay mallory 100"}, tamper=watch, identities=IDS)
    assert err.value.culprits == []
    assert err.value.round == 1
    # signer 1 is the first to see it: the others were given another message than it was
    assert err.value.reason == "parties [0] were given different session parameters"
    assert set(sent_rounds) == {1}


def test_commitment_altered_in_transit_is_dropped_and_equivocation_is_named():
    ks = simulate.keygen(3, 2, "schnorr-bip340", rng=SeededRNG(b"eq"), identities=IDS)
    other = new_nonces(ks[1], SeededRNG(b"other"))

    def alter(msg, recipient):  # not re-signed: a relay cannot sign as party 1
        if msg.sender == 1 and msg.round == 1:
            return dataclasses.replace(msg, payload=msg.payload.replace(msg.payload[-33:], other.E))
        return msg

    with pytest.raises(RuntimeError, match="did not finish"):
        simulate.sign(ks, b"m", tamper=alter, identities=IDS)
    # party 1 itself sends party 0 another commitment than it sent party 2: named by the echo
    ks3 = simulate.keygen(3, 3, "schnorr-bip340", rng=SeededRNG(b"eq3"), identities=IDS)
    equivocate = corrupt(IDS, FrostSignParty, 1, 1, replace_field("E", lambda e: other.E), only_to=0)
    with pytest.raises(ProtocolAbort) as err:
        simulate.sign(ks3, b"m", tamper=equivocate, identities=IDS)
    assert err.value.culprits == [1]
    assert "sent different broadcasts to different parties" in err.value.reason


def _package(ks, nonces, message):
    return SigningPackage(message, {n.index: [n.D, n.E] for n in nonces})


def test_signer_refuses_a_coordinator_that_changes_message_or_its_commitment():
    ks = simulate.keygen(3, 2, "schnorr-bip340", rng=SeededRNG(b"coord"), identities=IDS)
    n0, n1 = new_nonces(ks[0], SeededRNG(b"n0")), new_nonces(ks[1], SeededRNG(b"n1"))
    pkg = _package(ks, [n0, n1], b"approved")
    with pytest.raises(SigningRefused) as err:
        sign_package(ks[0], n0, dataclasses.replace(pkg, message=b"changed"), b"approved")
    assert (err.value.code, str(err.value)) == (
        "signing_refused", "check 1: the message is not the one this signer approved")
    forged = dataclasses.replace(pkg, commitments={**pkg.commitments, 0: [n1.D, n1.E]})
    with pytest.raises(SigningRefused, match="^check 3: this signer's commitment was changed$"):
        sign_package(ks[0], n0, forged, b"approved")
    alone = dataclasses.replace(pkg, commitments={0: pkg.commitments[0]})
    with pytest.raises(SigningRefused, match="^check 2: "):
        sign_package(ks[0], n0, alone, b"approved")
    assert not n0.spent  # refused packages consume nothing
    z = {0: sign_package(ks[0], n0, pkg, b"approved"), 1: sign_package(ks[1], n1, pkg, b"approved")}
    sig = aggregate_package(ks[2], pkg, z)
    assert coincurve.PublicKeyXOnly(ks[0].public_key).verify(sig, b"approved")


def test_a_changed_commitment_list_gives_shares_that_do_not_combine():
    """A coordinator showing signer 1 a list with another party-0 commitment: each signer's ρ
    comes from the list it saw, so the aggregate under the real list names signer 1's share."""
    ks = simulate.keygen(3, 2, "ed25519", rng=SeededRNG(b"list"), identities=IDS)
    n0, n1 = new_nonces(ks[0], SeededRNG(b"a")), new_nonces(ks[1], SeededRNG(b"b"))
    spare = new_nonces(ks[0], SeededRNG(b"c"))
    pkg = _package(ks, [n0, n1], b"m")
    shown_to_1 = dataclasses.replace(pkg, commitments={**pkg.commitments, 0: [spare.D, spare.E]})
    z = {0: sign_package(ks[0], n0, pkg, b"m"), 1: sign_package(ks[1], n1, shown_to_1, b"m")}
    with pytest.raises(ProtocolAbort) as err:
        aggregate_package(ks[0], pkg, z)
    assert err.value.culprits == [1]


def test_nonce_is_consumed_once():
    ks = simulate.keygen(2, 2, "ed25519", rng=SeededRNG(b"nonce"), identities=IDS)
    n0, n1 = new_nonces(ks[0], SeededRNG(b"x")), new_nonces(ks[1], SeededRNG(b"y"))
    pkg = _package(ks, [n0, n1], b"first")
    sign_package(ks[0], n0, pkg, b"first")
    for again in (n0, copy.copy(n0), copy.deepcopy(n0)):
        with pytest.raises(NonceSpent) as err:
            sign_package(ks[0], again, dataclasses.replace(pkg, message=b"second"), b"second")
        assert (err.value.code, str(err.value)) == ("nonce_spent", "this nonce was already used")
    with pytest.raises(NonceSpent, match="^a spent nonce is not serialized again$"):
        n0.to_bytes()
    # a pooled nonce handed to the protocol is consumed by it, and refused the second time
    pooled = {i: new_nonces(ks[i], SeededRNG(f"p{i}")) for i in (0, 1)}
    pooled_copy = {i: copy.copy(n) for i, n in pooled.items()}
    simulate.sign(ks, b"one", nonces=pooled, identities=IDS)
    with pytest.raises(NonceSpent):
        simulate.sign(ks, b"two", nonces=pooled_copy, identities=IDS)


# -- second review (issue 16) -----------------------------------------------------------


def test_coordinator_refuses_a_package_whose_signer_set_is_not_t_participants():
    """aggregate_package raised a bare KeyError for a party outside the key and an
    'internal' abort for a set below t: both are the coordinator's own bad input."""
    ks = simulate.keygen(3, 2, "ed25519", rng=SeededRNG(b"agg-set"), identities=IDS)
    n0, n1 = new_nonces(ks[0], SeededRNG(b"g0")), new_nonces(ks[1], SeededRNG(b"g1"))
    pkg = _package(ks, [n0, n1], b"m")
    z = {0: sign_package(ks[0], n0, pkg, b"m"), 1: sign_package(ks[1], n1, pkg, b"m")}
    stranger = dataclasses.replace(pkg, commitments={**pkg.commitments, 7: pkg.commitments[1]})
    for bad in (stranger, dataclasses.replace(pkg, commitments={0: pkg.commitments[0]})):
        with pytest.raises(ParameterError) as err:
            aggregate_package(ks[2], bad, {**z, 7: z[1]})
        assert (err.value.code, str(err.value)) == (
            "bad_parameter", "the signer set must be at least t participants of the key")
    assert aggregate_package(ks[2], pkg, z)


def test_signer_refuses_nonces_made_for_another_scheme():
    """sign_package checked the nonces' index but not their scheme (FrostSignParty checks
    both): a frost-secp256k1 pair was spent on a schnorr-bip340 share."""
    tr = simulate.keygen(2, 2, "schnorr-bip340", rng=SeededRNG(b"tr"), identities=IDS)
    plain = simulate.keygen(2, 2, "frost-secp256k1", rng=SeededRNG(b"plain"), identities=IDS)
    alien, n1 = new_nonces(plain[0], SeededRNG(b"alien")), new_nonces(tr[1], SeededRNG(b"n1"))
    pkg = _package(tr, [alien, n1], b"m")
    with pytest.raises(ParameterError) as err:
        sign_package(tr[0], alien, pkg, b"m")
    assert (err.value.code, str(err.value)) == ("bad_parameter", "these nonces belong to another share")
    assert not alien.spent


def _two_round(ks, message, *, roots=None, keys=None, signers=(0, 1)):
    """FrostSignParty for ``signers``, each with its own (possibly changed) merkle root and key."""
    roots, keys = roots or {}, keys or {}
    return {i: FrostSignParty(b"sid-binding", keys.get(i, ks[i]), list(signers), message, IDS.signers[i],
                              IDS.directory, SeededRNG(b"r%d" % i), merkle_root=roots.get(i, b""))
            for i in signers}


@pytest.mark.parametrize("change", ["merkle_root", "untweaked", "derivation"])
def test_tweak_or_child_changed_for_one_signer_stops_before_any_share(change):
    """A coordinator telling signer 1 another Taproot merkle root, no tweak at all, or another
    BIP32 child than signer 0 signs for: the session parameters (tweak, key fingerprint) differ,
    so the session stops in round 1, nobody blamed, and no signature share was ever sent."""
    ks = simulate.keygen(3, 2, "schnorr-bip340", rng=SeededRNG(b"tweak"), identities=IDS)
    chain = bytes(range(32))
    if change == "derivation":
        parties = _two_round(ks, b"m" * 32, keys={0: derive_key(ks[0], chain, "m/0/1"),
                                                    1: derive_key(ks[1], chain, "m/0/2")})
    else:
        parties = _two_round(ks, b"m" * 32, roots={1: b"\x01" * 32 if change == "merkle_root" else None})
    sent_rounds = []

    def watch(msg, recipient):
        sent_rounds.append(msg.round)
        return msg

    with pytest.raises(ProtocolAbort) as err:
        run(parties, watch)
    assert (err.value.culprits, err.value.round) == ([], 1)
    assert err.value.reason in ("parties [0] were given different session parameters",
                                "parties [1] were given different session parameters")
    assert set(sent_rounds) == {1}
    assert not any(p.nonces.spent for p in parties.values())  # no z_i was computed
