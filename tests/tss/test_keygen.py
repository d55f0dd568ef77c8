"""t-of-n DKG: correctness, and every failure names exactly the misbehaving party."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from appliance.errors import ParameterError
from appliance.tss import wire
from appliance.tss.group import G, Q, Point, SeededRNG
from appliance.tss.keygen import KeygenParty, evaluation_points
from appliance.tss.protocol import Message, ProtocolAbort, RoundPayload
from appliance.tss.runner import run
from appliance.tss.runner import Identities
from tests.adversary import corrupt, replace_field, resign, together


def parties(n, t, ids, sid=b"keygen-session", seed=0):
    return {i: KeygenParty(sid, i, list(range(n)), t, ids.signers[i], ids.directory, SeededRNG(f"{seed}-{i}"))
            for i in range(n)}


@pytest.mark.parametrize("n,t", [(2, 2), (3, 2), (5, 3), (4, 1)])
def test_keygen_shares_interpolate(n, t):
    ids = Identities(range(n), SeededRNG("ids"))
    shares = run(parties(n, t, ids))
    pks = {s.public_key for s in shares.values()}
    assert len(pks) == 1
    pk = shares[0].public_key_point
    for subset in itertools.combinations(range(n), t):
        x = sum(shares[i].secret_share * shares[i].lagrange(list(subset)) for i in subset) % Q
        assert G * x == pk
    for s in shares.values():
        assert G * s.secret_share == s.public_shares[s.index]
        assert len(set(s.eval_points.values())) == n
        assert all(v != 0 and v not in range(n) for v in s.eval_points.values())
        assert s.chain_code == shares[0].chain_code and s.rid == shares[0].rid


def test_evaluation_points_are_not_indices():
    pts = evaluation_points(b"sid", [0, 1, 2])
    assert set(pts) == {0, 1, 2} and all(v not in (0, 1, 2) for v in pts.values())


IDS = Identities(range(3), SeededRNG("adv"))
CASES = {
    "r1 commitment": (1, True, replace_field("V", lambda v: bytes(32))),
    "r2 reveal F": (2, True, replace_field("F", lambda F: [F[0] + G] + F[1:])),
    "r2 reveal rid": (2, True, replace_field("rid", lambda r: bytes(32))),
    "r2 short vector": (2, True, replace_field("F", lambda F: F[:-1])),
    "r2 share": (2, False, replace_field("sigma", lambda s: (s + 1) % Q)),
    "r2 share out of range": (2, False, replace_field("sigma", lambda s: s + Q)),
    "r3 proof": (3, True, replace_field("psi", lambda p: dataclasses.replace(p, z=(p.z + 1) % Q))),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("bad", [0, 2])
def test_misbehaving_party_is_named(case, bad):
    rnd, bcast, mutate = CASES[case]
    with pytest.raises(ProtocolAbort) as err:
        run(parties(3, 2, IDS), corrupt(IDS, KeygenParty, bad, rnd, mutate, broadcast=bcast))
    assert err.value.culprits == [bad], err.value


@pytest.mark.parametrize("rnd,bcast,mutate", [
    CASES["r2 share"], CASES["r2 reveal F"], CASES["r3 proof"], CASES["r1 commitment"],
], ids=["r2 shares", "r2 reveals", "r3 proofs", "r1 commitments (found in r2)"])
def test_every_misbehaving_party_of_a_round_is_named(rnd, bcast, mutate):
    """Parties 1 and 3 of 5 both misbehave in the same round: both are named, not only the
    first one checked (as cggmp21 collects faulty_parties)."""
    ids = Identities(range(5), SeededRNG("two-bad"))
    tamper = together(*(corrupt(ids, KeygenParty, bad, rnd, mutate, broadcast=bcast) for bad in (1, 3)))
    with pytest.raises(ProtocolAbort) as err:
        run(parties(5, 3, ids), tamper)
    assert err.value.culprits == [1, 3], err.value
    assert "party 1: " in err.value.reason and "party 3: " in err.value.reason


def test_two_kinds_of_misbehaviour_in_one_round_are_both_named():
    ids = Identities(range(4), SeededRNG("two-kinds"))
    tamper = together(corrupt(ids, KeygenParty, 0, 2, replace_field("sigma", lambda s: s + Q), broadcast=False),
                      corrupt(ids, KeygenParty, 2, 2, replace_field("F", lambda F: F[:-1])))
    with pytest.raises(ProtocolAbort) as err:
        run(parties(4, 2, ids), tamper)
    assert err.value.culprits == [0, 2]
    assert err.value.round == 2
    assert err.value.reason == ("party 0: share is not a scalar; "
                                "party 2: reveal does not match its commitment")


def test_bad_arguments_are_not_protocol_aborts():
    """A caller's mistake (here a threshold above n) is a ParameterError: nobody misbehaved."""
    with pytest.raises(ParameterError, match="threshold"):
        KeygenParty(b"sid", 0, [0, 1, 2], 4, IDS.signers[0], IDS.directory, SeededRNG("x"))
    with pytest.raises(ParameterError, match="threshold"):
        KeygenParty(b"sid", 0, [0, 1, 2], 0, IDS.signers[0], IDS.directory, SeededRNG("x"))


def test_equivocating_broadcast_is_named():
    """Party 1 sends a different round-1 commitment to party 2 than to party 0."""
    tamper = corrupt(IDS, KeygenParty, 1, 1, replace_field("V", lambda v: bytes(32)), only_to=2)
    with pytest.raises(ProtocolAbort) as err:
        run(parties(3, 2, IDS), tamper)
    assert err.value.culprits == [1]
    assert "different broadcasts" in err.value.reason


def test_false_echo_names_the_echoer():
    """Party 2 echoes a hash nobody signed: party 2 is named, not the original sender."""

    def tamper(msg: Message, recipient: int):
        if msg.sender == 2 and msg.round == 2 and msg.is_broadcast:
            rp = wire.decode(msg.payload, RoundPayload)
            echo = [dataclasses.replace(e, payload_hash=bytes(32)) if e.sender == 0 else e for e in rp.echo]
            return resign(msg, IDS, wire.encode(RoundPayload(rp.body, echo)))
        return msg

    tamper.corrupted = {2}
    with pytest.raises(ProtocolAbort) as err:
        run(parties(3, 2, IDS), tamper)
    assert err.value.culprits == [2]


def test_malformed_signed_payload_is_named():
    def tamper(msg: Message, recipient: int):
        if msg.sender == 0 and msg.round == 2 and not msg.is_broadcast:
            return resign(msg, IDS, b"\xa0")
        return msg

    tamper.corrupted = {0}
    with pytest.raises(ProtocolAbort) as err:
        run(parties(3, 2, IDS), tamper)
    assert err.value.culprits == [0]


def test_altered_or_replayed_messages_are_dropped_not_blamed():
    recorded: list[Message] = []

    def record(msg, recipient):
        recorded.append(msg)
        return msg

    run(parties(3, 2, IDS, sid=b"other-session", seed=9), record)
    ps = parties(3, 2, IDS, seed=1)
    rejected = []
    replayed = {m.round: m for m in recorded if m.sender == 0 and m.recipient in (None, 1)}

    def tamper(msg, recipient):
        if msg.sender == 0 and recipient == 1 and msg.round == 1:
            # first a replay from another session and an altered copy, then the real one
            flipped = dataclasses.replace(msg, payload=msg.payload[:-1] + bytes([msg.payload[-1] ^ 1]))
            for bogus in (replayed[1], flipped, dataclasses.replace(msg, recipient=2)):
                try:
                    ps[1].receive(bogus.encode())
                except Exception as exc:  # noqa: BLE001
                    rejected.append(type(exc).__name__)
        return msg

    results = run(ps, tamper)
    assert rejected == ["MessageRejected"] * 3
    assert len({r.public_key for r in results.values()}) == 1


def test_duplicate_and_garbage_bytes_are_dropped():
    ps = parties(3, 2, IDS, seed=2)
    out0 = ps[0].start()
    ps[1].start()
    bcast = next(m for m in out0 if m.is_broadcast)
    ps[1].receive(bcast.encode())
    from appliance.tss.protocol import MessageRejected

    for junk in (bcast.encode(), b"", b"\x00" * 10, b"\xff" * 100):
        with pytest.raises(MessageRejected):
            ps[1].receive(junk)


def test_point_at_infinity_never_decodes():
    from appliance.errors import EncodingError

    with pytest.raises(EncodingError):
        wire.decode(wire.encode([b"\x00" * 33], list[bytes]), list[Point])
