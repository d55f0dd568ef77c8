"""Presign and sign: every quorum signs, independent verifiers accept, misbehaviour is named."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import pickle
from concurrent.futures import ThreadPoolExecutor

import pytest

from appliance.errors import ParameterError
from appliance.tss import simulate
from appliance.tss.ecdsa import recover_public_key, verify, verify_with_libsecp256k1, verify_with_openssl
from appliance.tss.group import G, Q, SeededRNG
from appliance.tss.presign import Presignature, PresignParty, PresignRound3
from appliance.tss.protocol import ProtocolAbort
from appliance.tss.runner import Identities, run
from appliance.tss.sign import PresignatureSpent, SignParty
from tests.adversary import corrupt, replace_field, together


def digest(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def check_signature(shares, d, sig, tweak=0):
    pk = shares[0].public_key_point + G * tweak
    pkb = pk.to_bytes()
    assert sig.s <= Q // 2
    assert verify(pk, d, sig, strict_low_s=True)
    assert verify_with_libsecp256k1(pkb, d, sig)
    assert verify_with_openssl(pkb, d, sig)
    assert recover_public_key(d, sig) == pk


def test_every_pair_of_a_2of3_key_signs(key_2of3):
    for pair in itertools.combinations(key_2of3, 2):
        d = digest(f"pair {pair[0].index}{pair[1].index}")
        sig = simulate.sign(list(pair), d, rng=SeededRNG(str(pair)))
        check_signature(key_2of3, d, sig)


def test_3of5_subsets_sign(key_3of5):
    for subset in [(0, 1, 2), (2, 3, 4), (0, 2, 4)]:
        chosen = [key_3of5[i] for i in subset]
        d = digest(f"subset {subset}")
        check_signature(key_3of5, d, simulate.sign(chosen, d, rng=SeededRNG(str(subset))))


def test_too_few_shares_refused(key_3of5):
    from appliance.errors import ParameterError

    with pytest.raises(ParameterError):
        simulate.sign(key_3of5[:2], digest("x"))


def test_derived_key_tweak_signs(key_2of3):
    tweak = 0x1234567890ABCDEF
    d = digest("tweaked")
    sig = simulate.sign(key_2of3[1:], d, tweak=tweak, rng=SeededRNG("tweak"))
    check_signature(key_2of3, d, sig, tweak)


def test_presignature_cannot_be_used_twice(key_2of3):
    rng = SeededRNG("twice")
    ps = simulate.presign(key_2of3[:2], rng=rng)
    spent: set[bytes] = set()
    simulate.sign_with_presignature(key_2of3[:2], ps, digest("one"), rng=rng, spent=spent)
    with pytest.raises(PresignatureSpent):
        simulate.sign_with_presignature(key_2of3[:2], ps, digest("two"), rng=rng, spent=spent)


def test_same_presignature_gives_unlinked_nonces(key_2of3):
    """Re-randomization: two signings from copies of one presignature use different R (the
    copies are decoded from bytes, as a restored database would hand them out: only the
    node's store stops that)."""
    rng = SeededRNG("rerand")
    ps = simulate.presign(key_2of3[:2], rng=rng)
    copies = [[Presignature.from_bytes(p.to_bytes()) for p in ps] for _ in range(2)]
    s1 = simulate.sign_with_presignature(key_2of3[:2], copies[0], digest("a"), rng=rng)
    s2 = simulate.sign_with_presignature(key_2of3[:2], copies[1], digest("a"), rng=rng)
    assert s1.r != s2.r


def test_sign_party_consumes_its_presignature(key_2of3):
    """Single use by construction (issue 12, item 12): no caller-supplied set needed."""
    shares = key_2of3[:2]
    ps = simulate.presign(shares, rng=SeededRNG("consume"))
    first = sign_parties(shares, ps, digest("one"), "consume-1")
    with pytest.raises(PresignatureSpent) as err:
        SignParty(b"sign-again", shares[0], ps[0], digest("two"), IDS.signers[0], IDS.directory,
                  SeededRNG("again"))
    assert all(p.spent for p in ps)
    assert err.value.code == "presignature_spent"
    assert str(err.value) == "this presignature was already used"
    # the first session still completes; a copy of a spent object is spent too
    assert len(set(run(first).values())) == 1
    points = [ps[1].R, *ps[1].Delta_tilde.values(), *ps[1].S_tilde.values()]  # coincurve: shared
    for dup in (copy.copy(ps[1]), copy.deepcopy(ps[1], {id(pt): pt for pt in points})):
        with pytest.raises(PresignatureSpent):
            SignParty(b"sign-copy", shares[1], dup, digest("two"), IDS.signers[1], IDS.directory,
                      SeededRNG("copy"))
    with pytest.raises(PresignatureSpent, match="not serialized again"):
        ps[0].to_bytes()
    with pytest.raises(TypeError):
        pickle.dumps(ps[0])


def test_a_refused_sign_party_does_not_spend_the_presignature(key_2of3):
    shares = key_2of3[:2]
    ps = simulate.presign(shares, rng=SeededRNG("refused"))
    with pytest.raises(ParameterError, match="32 bytes"):
        SignParty(b"sign-bad", shares[0], ps[0], b"short", IDS.signers[0], IDS.directory, SeededRNG("b"))
    assert not ps[0].spent
    assert Presignature.from_bytes(ps[0].to_bytes()) == ps[0]
    check_signature(key_2of3, digest("ok"), simulate.sign_with_presignature(shares, ps, digest("ok")))


IDS = Identities(range(5), SeededRNG("presign-adversary"))


def presign_parties(shares, cls_for=None, seed="p"):
    signers = sorted(s.index for s in shares)
    cls_for = cls_for or {}
    return {s.index: cls_for.get(s.index, PresignParty)(b"presig-" + seed.encode(), s, signers, IDS.signers[s.index],
                                                        IDS.directory, SeededRNG(f"{seed}{s.index}"))
            for s in shares}


PRESIGN_CASES = {
    "r1 K not what the proof says": (1, True, replace_field("K", lambda K: K * 4)),
    "r1 Y changed": (1, True, replace_field("Y", lambda Y: Y + G)),
    "r1 enc-elg proof": (1, False, replace_field("psi1", lambda p: dataclasses.replace(p, w=(p.w + 1) % Q))),
    "r2 Gamma changed": (2, True, replace_field("Gamma", lambda P: P + G)),
    "r2 D changed": (2, True, replace_field("D", lambda D: {k: v * 4 for k, v in D.items()})),
    "r2 aff-g proof": (2, False, replace_field("psi_hat", lambda p: dataclasses.replace(p, z1=p.z1 + 1))),
    "r3 Delta changed": (3, True, replace_field("Delta", lambda P: P + G)),
}


@pytest.mark.parametrize("case", sorted(PRESIGN_CASES))
def test_presign_misbehaviour_names_the_party(key_2of3, case):
    rnd, bcast, mutate = PRESIGN_CASES[case]
    shares = key_2of3[:2]
    with pytest.raises(ProtocolAbort) as err:
        run(presign_parties(shares, seed=case), corrupt(IDS, PresignParty, 1, rnd, mutate, broadcast=bcast))
    assert err.value.culprits == [1], err.value


@pytest.mark.parametrize("case", ["r1 K not what the proof says", "r2 aff-g proof", "r3 Delta changed"])
def test_presign_names_every_misbehaving_party_of_a_round(key_3of3, case):
    rnd, bcast, mutate = PRESIGN_CASES[case]
    tamper = together(*(corrupt(IDS, PresignParty, bad, rnd, mutate, broadcast=bcast) for bad in (1, 2)))
    with pytest.raises(ProtocolAbort) as err:
        run(presign_parties(key_3of3, seed="two-" + case), tamper)
    assert err.value.culprits == [1, 2], err.value
    assert err.value.round == rnd


class RecordingPool:
    """A party's check executor: a real thread pool, recording which senders each round's
    checks were handed."""

    def __init__(self, pool):
        self.pool, self.batches = pool, []

    def map(self, fn, items):
        items = list(items)
        self.batches.append(items)
        return self.pool.map(fn, items)


def test_presign_checks_run_on_the_injected_pool(key_3of3):
    """Each round's checks of the other signers go to the executor the party was given (a
    node's thread pool), and the presignature they give signs."""
    with ThreadPoolExecutor(2) as pool:
        pools = {i: RecordingPool(pool) for i in (0, 1, 2)}
        parties = presign_parties(key_3of3, seed="pooled")
        for i, party in parties.items():
            party.checks = pools[i]
        presigs = run(parties)
    assert {i: p.batches for i, p in pools.items()} == {0: [[1, 2]] * 4, 1: [[0, 2]] * 4, 2: [[0, 1]] * 4}
    d = digest("pooled")
    check_signature(key_3of3, d, simulate.sign_with_presignature(key_3of3, list(presigs.values()), d,
                                                                 rng=SeededRNG("pooled")))


def test_a_pooled_check_still_names_every_culprit(key_3of3):
    rnd, bcast, mutate = PRESIGN_CASES["r1 K not what the proof says"]
    tamper = together(*(corrupt(IDS, PresignParty, bad, rnd, mutate, broadcast=bcast) for bad in (1, 2)))
    with ThreadPoolExecutor(2) as pool:
        parties = presign_parties(key_3of3, seed="pooled-culprits")
        parties[0] = PresignParty(b"presig-pooled-culprits", key_3of3[0], [0, 1, 2], IDS.signers[0], IDS.directory,
                                  SeededRNG("pooled-culprits0"), checks=pool)
        with pytest.raises(ProtocolAbort) as err:
            run(parties, tamper)
    assert (err.value.culprits, err.value.round) == ([1, 2], 1)
    assert err.value.reason.startswith("party 1: Π^enc-elg for K failed")


def test_presign_refuses_bad_arguments_without_blame(key_2of3, key_3of3):
    """A signer set that is not `threshold` participants is the caller's mistake."""
    with pytest.raises(ParameterError, match="signer set"):
        PresignParty(b"args", key_2of3[0], [0, 1, 2], IDS.signers[0], IDS.directory, SeededRNG("a"))
    with pytest.raises(ParameterError, match="signer set"):
        PresignParty(b"args", key_3of3[0], [0, 1], IDS.signers[0], IDS.directory, SeededRNG("a"))


def test_presign_equivocated_delta_is_named(key_3of3):
    tamper = corrupt(IDS, PresignParty, 2, 3, replace_field("delta", lambda d: (d + 1) % Q), only_to=0)
    with pytest.raises(ProtocolAbort) as err:
        run(presign_parties(key_3of3, seed="equivocate"), tamper)
    assert err.value.culprits == [2]


class LyingDeltaRound3(PresignRound3):
    """Announces a wrong δ_i and then goes through identification as if it were right."""

    def send(self):
        self.delta_i = (self.delta_i + 1) % Q
        return super().send()


class LyingChiRound3(PresignRound3):
    """Announces S_i = Γ^χ_i · g and goes on as if it were right."""

    def send(self):
        bc, d = super().send()
        self.sent = dataclasses.replace(bc, S=bc.S + G)
        return self.sent, d


class LyingDelta(PresignParty):
    ROUNDS = {**PresignParty.ROUNDS, 3: LyingDeltaRound3}


class LyingChi(PresignParty):
    ROUNDS = {**PresignParty.ROUNDS, 3: LyingChiRound3}


@pytest.fixture
def fewer_repetitions(monkeypatch):
    """m = 16 instead of 128 for Π^aff-g* and Π^dec in presign: the same code with fewer
    repetitions keeps the suite fast (the proofs are tested with the real m on their own)."""
    import appliance.tss.presign as presign_module
    from appliance.tss.params import security_params

    monkeypatch.setattr(presign_module, "security_params",
                        lambda bits: dataclasses.replace(security_params(bits), m=16))


@pytest.mark.parametrize("liar", [LyingDelta, LyingChi], ids=["delta", "chi"])
def test_identification_step_names_the_liar(key_2of3, liar, fewer_repetitions):
    """Fig. 9: the failure is only visible at the end; Π^dec and Π^aff-g* name the party."""
    parties = presign_parties(key_2of3[1:], {2: liar}, seed=liar.__name__)

    def tamper(msg, recipient):
        return msg

    tamper.corrupted = {2}
    with pytest.raises(ProtocolAbort) as err:
        run(parties, tamper)
    assert err.value.culprits == [2]
    assert err.value.round == 4


def sign_parties(shares, presigs, d, seed="s"):
    by = {p.index: p for p in presigs}
    return {s.index: SignParty(b"sign-" + seed.encode(), s, by[s.index], d, IDS.signers[s.index], IDS.directory,
                               SeededRNG(f"{seed}{s.index}")) for s in shares}


def test_bad_partial_signature_is_named(key_2of3):
    shares = key_2of3[:2]
    ps = simulate.presign(shares, rng=SeededRNG("bad-sigma"))
    tamper = corrupt(IDS, SignParty, 0, 2, replace_field("sigma", lambda s: (s + 1) % Q))
    with pytest.raises(ProtocolAbort) as err:
        run(sign_parties(shares, ps, digest("m"), "bad-sigma"), tamper)
    assert err.value.culprits == [0]


def test_every_bad_partial_signature_is_named(key_3of3):
    ps = simulate.presign(key_3of3, rng=SeededRNG("two-bad-sigma"))
    tamper = together(*(corrupt(IDS, SignParty, bad, 2, replace_field("sigma", lambda s: (s + 1) % Q))
                        for bad in (0, 2)))
    with pytest.raises(ProtocolAbort) as err:
        run(sign_parties(key_3of3, ps, digest("m"), "two-bad-sigma"), tamper)
    assert err.value.culprits == [0, 2]
    assert err.value.reason == ("party 0: partial signature does not match the presignature; "
                                "party 2: partial signature does not match the presignature")


def test_partial_signatures_that_cancel_give_the_honest_signature(key_3of3):
    """The σ_j are checked as one batch, the combined signature's verification (unit weights),
    and one by one only when it fails: deviations that cancel (+1 from party 0, -1 from party
    2) leave s, and so the output, exactly the honest one, which the honest party 1 releases."""
    d = digest("cancel")
    blobs = [p.to_bytes() for p in simulate.presign(key_3of3, rng=SeededRNG("cancel"))]
    honest = run(sign_parties(key_3of3, [Presignature.from_bytes(b) for b in blobs], d, "cancel"))
    tamper = together(corrupt(IDS, SignParty, 0, 2, replace_field("sigma", lambda s: (s + 1) % Q)),
                      corrupt(IDS, SignParty, 2, 2, replace_field("sigma", lambda s: (s - 1) % Q)))
    out = run(sign_parties(key_3of3, [Presignature.from_bytes(b) for b in blobs], d, "cancel"), tamper)
    assert out == {1: honest[1]}
    check_signature(key_3of3, d, out[1])


def test_sign_refuses_bad_arguments_without_blame(key_2of3):
    shares = key_2of3[:2]
    ps = simulate.presign(shares, rng=SeededRNG("sign-args"))
    with pytest.raises(ParameterError, match="tweak"):
        SignParty(b"sign-args", shares[0], ps[0], digest("m"), IDS.signers[0], IDS.directory,
                  SeededRNG("t"), tweak=Q)
    with pytest.raises(ParameterError, match="another key, epoch or party"):
        SignParty(b"sign-args", shares[1], ps[0], digest("m"), IDS.signers[1], IDS.directory, SeededRNG("t"))
    with pytest.raises(ParameterError, match="not a presignature"):
        SignParty(b"sign-args", shares[0], object(), digest("m"), IDS.signers[0], IDS.directory, SeededRNG("t"))
    assert not ps[0].spent and not ps[1].spent


def test_equivocated_sign_nonce_is_named(key_3of3):
    ps = simulate.presign(key_3of3, rng=SeededRNG("nonce-eq"))
    tamper = corrupt(IDS, SignParty, 1, 1, replace_field("nonce", lambda n: bytes(32)), only_to=2)
    with pytest.raises(ProtocolAbort) as err:
        run(sign_parties(key_3of3, ps, digest("m"), "nonce-eq"), tamper)
    assert err.value.culprits == [1]


def test_signers_disagreeing_on_the_digest_stop_without_blame(key_2of3):
    shares = key_2of3[:2]
    ps = simulate.presign(shares, rng=SeededRNG("digest"))
    parties = sign_parties(shares[:1], ps, digest("m"), "digest") | sign_parties(shares[1:], ps, digest("other"), "digest")
    with pytest.raises(ProtocolAbort) as err:
        run(parties)
    assert err.value.culprits == []
