"""Fuzzing the peer message path (hypothesis): the message decoder, the payload decoder for
every protocol payload type, the transport's batch/frame decoders, and live parties of every
protocol fed fuzzed input.

What must hold:
- decoders raise only their typed errors (``MessageRejected`` for envelopes and frames,
  ``EncodingError`` for payloads), never anything else, on malformed, truncated, huge or
  wrongly typed input;
- an outsider's bytes (not validly signed: garbage, altered envelopes or payloads, replays)
  fed to a live party's ``receive()`` raise ``MessageRejected`` and change nothing (round,
  done, inbox);
- an insider's message (validly signed by a party of the session, content fuzzed) ends in a
  result or a ``ProtocolAbort`` that blames at most that insider — never another exception,
  never an honest party.
"""

from __future__ import annotations

import dataclasses
import hashlib

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.errors import EncodingError, TooDeep
from appliance.tss import wire
from appliance.tss.cbor_depth import MAX_CBOR_DEPTH, check_depth
from appliance.tss.aux import AuxParty, generate_aux_keys
from appliance.tss.group import SeededRNG
from appliance.tss.keygen import KeygenParty
from appliance.tss.presign import Presignature, PresignParty
from appliance.tss.protocol import (
    MAX_MESSAGE_BYTES,
    EchoEntry,
    Message,
    MessageRejected,
    ProtocolAbort,
    RoundPayload,
    SetupCommit,
    _EchoOnly,
)
from appliance.tss.reshare import OldKeyInfo, ReshareParty
from appliance.tss.runner import Identities
from appliance.tss.sign import SignParty
from appliance.transport import Frame, decode_batch
from tests.conftest import prime_pool_from_test_file
from tests.fuzzing import (
    any_cbor,
    canonical,
    clone,
    examples,
    join_payload,
    lockstep,
    mutate_bytes,
    mutate_tree,
    party_state,
    resign,
    shaped,
    split_payload,
)

PARTY_CLASSES = {"keygen": KeygenParty, "aux": AuxParty, "presign": PresignParty, "sign": SignParty,
                 "reshare": ReshareParty}


def _rounds(cls) -> dict:
    rounds = dict(cls.ROUNDS)
    last = max(rounds)
    if rounds[last].echo:
        from appliance.tss.protocol import RoundSpec

        rounds[last + 1] = RoundSpec(broadcast=_EchoOnly)
    return rounds


def _collect_types() -> list[type]:
    """Every payload dataclass a RoundSpec names, the envelope types, and everything nested."""
    seen: list[type] = []

    def add(tp) -> None:
        import typing

        for arg in typing.get_args(tp):
            add(arg)
        if dataclasses.is_dataclass(tp) and tp not in seen:
            seen.append(tp)
            for _, ftp in wire._hints(tp):
                add(ftp)

    for cls in PARTY_CLASSES.values():
        for spec in _rounds(cls).values():
            add(spec.broadcast)
            add(spec.direct)
    for tp in (RoundPayload, EchoEntry, SetupCommit, Presignature, OldKeyInfo):
        add(tp)
    return seen


PAYLOAD_TYPES = _collect_types()
CASES = [(name, r, kind) for name, cls in PARTY_CLASSES.items() for r, spec in sorted(_rounds(cls).items())
         for kind in ("broadcast", "direct") if getattr(spec, kind) is not None]

SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck))


def test_every_round_type_is_covered():
    names = {tp.__name__ for tp in PAYLOAD_TYPES}
    for must in ("KeygenReveal", "KeygenShare", "KeygenProof", "AuxReveal", "RefreshShare", "AuxModProof",
                 "AuxFacProof", "R1Bcast", "R1Direct", "R2Bcast", "R2Direct", "R3Bcast", "R4Bcast", "SignR1",
                 "SignR2", "ReshareR1", "ReshareShare", "ReshareR2", "SchProof", "EncElgProof", "AffGProof"):
        assert must in names
    assert len(CASES) >= 20


# --------------------------------------------------------------------------------------
# decoders alone


@settings(max_examples=examples(400, 5000), **SETTINGS)
@given(st.binary(max_size=4096))
def test_message_decode_arbitrary_bytes(data):
    try:
        m = Message.decode(data)
    except MessageRejected:
        return
    assert Message.decode(m.encode()) == m


@settings(max_examples=examples(300, 4000), **SETTINGS)
@given(st.one_of(any_cbor(), st.tuples(any_cbor(2), any_cbor(2), any_cbor(2), any_cbor(2), any_cbor(2),
                                       any_cbor(2), any_cbor(2), any_cbor(2)).map(list),
                 st.tuples(st.text(max_size=6), st.binary(max_size=70), st.text(max_size=40), st.integers(),
                           st.integers(), st.one_of(st.none(), st.integers(), st.booleans()),
                           st.binary(max_size=20), st.binary(max_size=140)).map(list)))
def test_message_decode_wrong_types(tree):
    try:
        data = cbor2.dumps(tree)
    except (ValueError, TypeError, OverflowError):
        return
    try:
        Message.decode(data)
    except MessageRejected:
        pass


def test_message_decode_huge_and_odd_inputs():
    for data in (b"\x00" * (MAX_MESSAGE_BYTES + 1), "text", None, 12, b"", b"\x81" * 200_000 + b"\x00",
                 b"\x9f" * 100_000, b"\x5b" + b"\xff" * 8, b"\xc2\x5a\x00\xf0\x00\x00"):
        with pytest.raises(MessageRejected):
            Message.decode(data)  # type: ignore[arg-type]


@pytest.mark.parametrize("tp", PAYLOAD_TYPES, ids=lambda t: t.__name__)
@settings(max_examples=examples(60, 1500), **SETTINGS)
@given(data=st.data())
def test_payload_decode_only_encoding_errors(tp, data):
    """Shaped trees (right nesting, lying values), arbitrary trees, non-canonical encodings,
    truncations and random bytes: a value of ``tp`` or EncodingError, nothing else."""
    how = data.draw(st.sampled_from(["shaped", "shaped-noncanonical", "any", "bytes", "truncated"]))
    if how == "bytes":
        raw = data.draw(st.binary(max_size=512))
    else:
        tree = data.draw(any_cbor() if how == "any" else shaped(tp), label="tree")
        try:
            raw = cbor2.dumps(tree) if how == "shaped-noncanonical" else canonical(tree)
        except (ValueError, TypeError, OverflowError):
            return
        if how == "truncated" and raw:
            raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    try:
        value = wire.decode(raw, tp)
    except EncodingError:
        return
    assert isinstance(value, tp)
    assert wire.encode(value, tp) == raw  # what decodes is canonical and round-trips


@pytest.mark.parametrize("tp", PAYLOAD_TYPES, ids=lambda t: t.__name__)
def test_payload_decode_huge(tp):
    nfields = len(wire._hints(tp)) or 1  # a field-less type: one stray field
    for raw in (b"\x00" * (wire.MAX_PAYLOAD_BYTES + 1),
                canonical([2 ** (wire.MAX_INT_BITS + 1)] * nfields),
                canonical([[0] * (wire.MAX_ITEMS + 1)] * nfields),
                canonical([{i: 0 for i in range(wire.MAX_ITEMS + 1)}] * nfields),
                b"\x81" * 100_000 + b"\x00"):
        with pytest.raises(EncodingError):
            wire.decode(raw, tp)
    for bad in ("text", None, 7, [1, 2]):
        with pytest.raises(EncodingError):
            wire.decode(bad, tp)  # type: ignore[arg-type]


@settings(max_examples=examples(300, 3000), **SETTINGS)
@given(st.one_of(any_cbor(), st.fixed_dictionaries({"job": any_cbor(2), "from": any_cbor(2),
                                                     "frames": st.lists(any_cbor(6), max_size=80)}),
                 st.binary(max_size=512)))
def test_batch_and_frame_decoders(tree):
    try:
        body = tree if isinstance(tree, bytes) else cbor2.dumps(tree)
    except (ValueError, TypeError, OverflowError):
        return
    try:
        _, _, frames = decode_batch(body)
    except MessageRejected:
        return
    for f in frames:
        try:
            Frame.parse(f)
        except MessageRejected:
            pass


@settings(max_examples=examples(60, 600), **SETTINGS)
@given(st.integers(MAX_CBOR_DEPTH + 1, 120_000),
       st.lists(st.sampled_from([b"\x81", b"\xa1\x00", b"\xc1", b"\x9f", b"\xbf\x61a", b"\x82\x00"]),
                min_size=1, max_size=4),
       st.binary(max_size=8))
def test_deep_nesting_is_refused_before_parsing(depth, heads, tail):
    """Arrays, maps, tags, indefinite containers nested past the bound (up to the 99,000
    levels that crashed a node): every peer decoder refuses them with its typed error."""
    raw = b"".join(heads[i % len(heads)] for i in range(depth)) + tail
    with pytest.raises(MessageRejected):
        decode_batch(raw)
    with pytest.raises(MessageRejected):
        Message.decode(raw[:MAX_MESSAGE_BYTES])
    with pytest.raises(EncodingError):
        wire.decode(raw[:wire.MAX_PAYLOAD_BYTES], PAYLOAD_TYPES[0])
    with pytest.raises(TooDeep):
        check_depth(raw)


@settings(max_examples=examples(200, 2000), **SETTINGS)
@given(st.fixed_dictionaries({"s": any_cbor(2), "p": any_cbor(2), "r": any_cbor(2), "f": any_cbor(2),
                              "t": any_cbor(2), "e": any_cbor(2), "d": any_cbor(2)}))
def test_frame_parse_wrong_types(m):
    try:
        Frame.parse(m)
    except MessageRejected:
        pass


# --------------------------------------------------------------------------------------
# live parties


SNAPSHOTS: dict[str, dict] = {}


def _build(name: str, key_2of3) -> dict:
    """Honest lock-step run of protocol ``name``: snapshots of the target before each round's
    last sender speaks, the insider's signer, and messages of a different session."""
    rng = SeededRNG(f"fuzz-{name}")
    if name == "keygen":
        ids = Identities(range(3), rng)
        parties = {i: KeygenParty(b"fuzz-keygen-sid", i, [0, 1, 2], 2, ids.signers[i], ids.directory,
                                  SeededRNG(f"kg{i}")) for i in range(3)}
    elif name == "aux":
        ids = Identities(range(3), rng)
        primes = prime_pool_from_test_file("fuzz-aux")
        parties = {s.index: AuxParty(b"fuzz-aux-sid", s, generate_aux_keys(2048, primes, rng), ids.signers[s.index],
                                     ids.directory, SeededRNG(f"aux{s.index}"), refresh=True) for s in key_2of3}
    elif name in ("presign", "sign"):
        ids = Identities([0, 1], rng)
        pre = {s.index: PresignParty(b"fuzz-presign-sid", s, [0, 1], ids.signers[s.index], ids.directory,
                                     SeededRNG(f"ps{s.index}")) for s in key_2of3[:2]}
        if name == "presign":
            parties = pre
        else:
            snaps = lockstep(pre, target=1, sender=0)
            del snaps
            digest = hashlib.sha256(b"fuzz").digest()
            parties = {s.index: SignParty(b"fuzz-sign-sid", s, pre[s.index].result, digest, ids.signers[s.index],
                                          ids.directory, SeededRNG(f"sg{s.index}")) for s in key_2of3[:2]}
    else:  # reshare: holders 0, 1 send to the committee 0, 1, 2
        ids = Identities(range(3), rng)
        old = OldKeyInfo.of(key_2of3[0])
        by = {s.index: s for s in key_2of3}
        parties = {i: ReshareParty(b"fuzz-reshare-sid", i, old, [0, 1], [0, 1, 2], 2, ids.signers[i], ids.directory,
                                   SeededRNG(f"rs{i}"), share=by[i] if i in (0, 1) else None) for i in range(3)}
    target = max(parties)
    sender = min(parties)
    snaps = lockstep(parties, target=target, sender=sender)
    return {"snaps": {s.round: s for s in snaps}, "signer": ids.signers[sender], "ids": ids}


@pytest.fixture(scope="module")
def protocols(key_2of3):
    def get(name: str) -> dict:
        if name not in SNAPSHOTS:
            SNAPSHOTS[name] = _build(name, key_2of3)
        return SNAPSHOTS[name]
    return get


def _case_examples(name: str, normal: int = 25, soak: int = 300) -> int:
    slow = name in ("aux", "presign")
    return examples(max(4, normal // 3) if slow else normal, soak // 3 if slow else soak)


def _prepare(snap, kind: str):
    """A clone of the snapshot that already took the sender's other message of the round."""
    party = clone(snap.target)
    for k, m in snap.held.items():
        if k != kind:
            party.receive(m.encode())
    return party


@pytest.mark.parametrize("name,rnd,kind", CASES, ids=[f"{n}-r{r}-{k}" for n, r, k in CASES])
def test_insider_fuzzed_payload_blames_only_the_sender(protocols, name, rnd, kind):
    proto = protocols(name)
    snap = proto["snaps"][rnd]
    honest = snap.held[kind]
    body, echo = split_payload(honest)
    body_tree = cbor2.loads(body)
    whole_tree = cbor2.loads(honest.payload)
    outcomes: dict[str, int] = {}

    @settings(max_examples=_case_examples(name), **SETTINGS)
    @given(data=st.data())
    def run(data):
        how = data.draw(st.sampled_from(["body-tree", "body-tree", "body-bytes", "whole-tree", "shaped"]))
        if how == "body-tree":
            payload = join_payload(canonical(mutate_tree(data, body_tree)), echo)
        elif how == "body-bytes":
            payload = join_payload(mutate_bytes(data, body), echo)
        elif how == "whole-tree":
            payload = canonical(mutate_tree(data, whole_tree))
        else:
            spec = _rounds(PARTY_CLASSES[name])[rnd]
            payload = join_payload(canonical(data.draw(shaped(getattr(spec, kind)))), echo)
        party = _prepare(snap, kind)
        msg = resign(proto["signer"], honest, payload)
        try:
            party.receive(msg.encode())
            outcome = "accepted"
        except ProtocolAbort as exc:
            assert set(exc.culprits) <= {snap.sender}, f"an honest party was blamed: {exc}"
            outcome = "abort-blamed" if exc.culprits else "abort"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    run()
    print(f"{name} r{rnd} {kind}: {outcomes}")
    assert outcomes.get("abort-blamed", 0) > 0 or outcomes.get("abort", 0) > 0


@pytest.mark.parametrize("name,rnd,kind", CASES, ids=[f"{n}-r{r}-{k}" for n, r, k in CASES])
def test_outsider_bytes_are_rejected_and_change_nothing(protocols, name, rnd, kind):
    proto = protocols(name)
    snap = proto["snaps"][rnd]
    honest = snap.held[kind]
    others = [p for n, p in SNAPSHOTS.items() if n != name]
    foreign = [m for p in others for s in p["snaps"].values() for m in s.held.values()]
    base = _prepare(snap, kind)
    before = party_state(base)

    @settings(max_examples=_case_examples(name, 40, 600), **SETTINGS)
    @given(data=st.data())
    def run(data):
        how = data.draw(st.sampled_from(["bytes", "mutated", "envelope", "payload-altered", "replay",
                                         "foreign"]))
        if how == "bytes":
            raw = data.draw(st.binary(max_size=512))
        elif how == "mutated":
            raw = mutate_bytes(data, honest.encode())
        elif how == "envelope":
            field = data.draw(st.sampled_from(["version", "session_id", "protocol", "round", "sender",
                                               "recipient", "signature"]))
            old = getattr(honest, field)
            new = {"version": ["0", honest.version + "x", ""], "session_id": [b"", b"x" * 16, honest.session_id[:-1]],
                   "protocol": ["sign", "keygen", "", "aux"], "round": [1, 2, 3, 4, 5, 63],
                   "sender": [0, 1, 2, 3, 999], "recipient": [None, 0, 1, 2, 7],
                   "signature": [b"", b"\x00" * 64, bytes(64 - 1) + b"\x01"]}[field]
            value = data.draw(st.sampled_from([v for v in new if v != old] or [None]))
            if field in ("recipient",) and (value is None) == (honest.recipient is None):
                # the same kind of message to another party, or a broadcast turned direct
                pass
            raw = dataclasses.replace(honest, **{field: value}).encode()
        elif how == "payload-altered":
            raw = dataclasses.replace(honest, payload=mutate_bytes(data, honest.payload)).encode()
        elif how == "replay":
            if not snap.seen:
                return
            raw = data.draw(st.sampled_from(snap.seen)).encode()
        else:
            if not foreign:
                return
            raw = data.draw(st.sampled_from(foreign)).encode()
        if raw == honest.encode():
            return
        party = clone(base)
        with pytest.raises(MessageRejected):
            party.receive(raw)
        assert party_state(party) == before

    run()
    # and the untouched party still finishes the round with the honest message
    party = clone(base)
    party.receive(honest.encode())
    assert party.round > rnd or party.done
