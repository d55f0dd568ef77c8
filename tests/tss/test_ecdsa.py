"""appliance.tss.ecdsa: encodings, low-S normalisation, verification and key recovery,
checked against libsecp256k1 (coincurve) and OpenSSL (cryptography)."""

from __future__ import annotations

import hashlib

import coincurve
import pytest
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from appliance.errors import EncodingError
from appliance.tss.ecdsa import (
    HALF_Q,
    Signature,
    normalize_low_s,
    recover_public_key,
    recovery_id_for,
    verify,
    verify_with_libsecp256k1,
    verify_with_openssl,
)
from appliance.tss.group import G, P, Q, Point, inverse, random_scalar


def _digest(rng) -> bytes:
    return rng.token_bytes(32)


def _coincurve_sign(x: int, digest: bytes) -> tuple[Signature, Point]:
    """A libsecp256k1 recoverable signature (always low-S) and the public key."""
    sk = coincurve.PrivateKey(x.to_bytes(32, "big"))
    raw = sk.sign_recoverable(digest, hasher=None)
    sig = Signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:64], "big"), raw[64])
    return sig, Point.from_bytes(sk.public_key.format())


def _textbook_sign(x: int, k: int, digest: bytes) -> tuple[Point, int, int]:
    """Plain ECDSA with a chosen nonce (no normalisation): (R, r, s)."""
    R = G * k
    r = R.x % Q
    s = inverse(k) * (int.from_bytes(digest, "big") + r * x) % Q
    return R, r, s


def _libsecp_recover(digest: bytes, sig: Signature) -> Point:
    raw = sig.compact() + bytes([sig.recovery_id])
    return Point.from_bytes(
        coincurve.PublicKey.from_signature_and_message(raw, digest, hasher=None).format()
    )


# -- Signature values -------------------------------------------------------------------


@pytest.mark.parametrize(
    "r,s,rid",
    [(0, 1, 0), (1, 0, 0), (Q, 1, 0), (1, Q, 0), (-1, 1, 0), (1, 2**256, 0),
     (1, 1, 4), (1, 1, -1), (True, 1, 0), (1, 1, True), ("1", 1, 0), (1.0, 1, 0)],
)
def test_signature_rejects_out_of_range_values(r, s, rid):
    with pytest.raises(EncodingError):
        Signature(r, s, rid)


def test_to_dict():
    sig = Signature(1, Q - 1, 3)
    d = sig.to_dict()
    assert d == {"der": sig.der().hex(), "r": "00" * 31 + "01", "s": f"{Q - 1:064x}",
                 "recovery_id": 3}
    assert len(d["r"]) == len(d["s"]) == 64
    assert Signature.from_der(bytes.fromhex(d["der"]), recovery_id=3) == sig
    assert Signature(5, 7).to_dict()["recovery_id"] is None


# -- DER ---------------------------------------------------------------------------------

EDGE_VALUES = [1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, HALF_Q, HALF_Q + 1, Q - 1,
               2**255 - 1, 2**255, 2**248 - 1, 2**248]


def _random_values(rng, n=200):
    for _ in range(n):
        # vary the length: a random scalar shifted right by a random number of bits
        yield max(1, random_scalar(rng) >> rng.randbelow(256))


def test_der_round_trip_and_matches_cryptography(rng):
    values = EDGE_VALUES + list(_random_values(rng))
    for i, r in enumerate(values):
        s = values[-1 - i]
        sig = Signature(r, s)
        der = sig.der()
        assert der == encode_dss_signature(r, s)  # independent DER encoder
        assert decode_dss_signature(der) == (r, s)
        assert Signature.from_der(der) == sig
        assert Signature.from_der(der, strict=False) == sig
        assert Signature.from_der(der, recovery_id=2) == Signature(r, s, 2)
        assert 8 <= len(der) <= 72


def test_der_lengths():
    assert Signature(1, 1).der() == bytes.fromhex("3006020101020101")
    assert Signature(0x80, 0x7F).der() == bytes.fromhex("3007020200800201 7f".replace(" ", ""))
    longest = Signature(Q - 1, Q - 1).der()
    assert len(longest) == 72 and longest[:4] == bytes.fromhex("30460221")


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag, len(body)]) + body


GOOD = Signature(0x813EF79CCEFA9A56F7BA805F0E478584FE5F0DD5F567BC09B5123CCBC9832365,
                 0x6FF18A52DCC0336F7AF62400A6DD9B810732BAF1FF758000D6F613A556EB31BA)
R_BODY = GOOD.r.to_bytes(33, "big")  # 00 81 ...: high bit set, needs the leading zero
S_BODY = GOOD.s.to_bytes(32, "big")


NON_CANONICAL_DER = {
    "empty": b"",
    "only tag": b"\x30",
    "trailing byte": GOOD.der() + b"\x00",
    "seq length too long": b"\x30" + bytes([GOOD.der()[1] + 1]) + GOOD.der()[2:],
    "seq length too short": b"\x30" + bytes([GOOD.der()[1] - 1]) + GOOD.der()[2:],
    "long-form seq length": b"\x30\x81" + GOOD.der()[1:],
    "zero-padded long-form seq length": b"\x30\x82\x00" + GOOD.der()[1:],
    "indefinite seq length": b"\x30\x80" + GOOD.der()[2:] + b"\x00\x00",
    "wrong outer tag": b"\x31" + GOOD.der()[1:],
    "r without leading zero (negative)": _tlv(0x30, _tlv(2, R_BODY[1:]) + _tlv(2, S_BODY)),
    "r with extra leading zero": _tlv(0x30, _tlv(2, b"\x00" + R_BODY) + _tlv(2, S_BODY)),
    "s with leading zero": _tlv(0x30, _tlv(2, R_BODY) + _tlv(2, b"\x00" + S_BODY)),
    "long-form r length": _tlv(0x30, b"\x02\x81\x21" + R_BODY + _tlv(2, S_BODY)),
    "long-form s length": _tlv(0x30, _tlv(2, R_BODY) + b"\x02\x81\x20" + S_BODY),
    "negative s": _tlv(0x30, _tlv(2, R_BODY) + _tlv(2, b"\xff" + S_BODY)),
    "empty r": _tlv(0x30, b"\x02\x00" + _tlv(2, S_BODY)),
    "r is zero": _tlv(0x30, _tlv(2, b"\x00") + _tlv(2, S_BODY)),
    "s is zero": _tlv(0x30, _tlv(2, R_BODY) + _tlv(2, b"\x00")),
    "r = q": _tlv(0x30, _tlv(2, b"\x00" + Q.to_bytes(32, "big")) + _tlv(2, S_BODY)),
    "s = q": _tlv(0x30, _tlv(2, R_BODY) + _tlv(2, b"\x00" + Q.to_bytes(32, "big"))),
    "r = 2^256 + r": _tlv(0x30, _tlv(2, b"\x01" + R_BODY[1:]) + _tlv(2, S_BODY)),
    "r wrong tag": _tlv(0x30, _tlv(3, R_BODY) + _tlv(2, S_BODY)),
    "missing s": _tlv(0x30, _tlv(2, R_BODY)),
    "third integer": _tlv(0x30, _tlv(2, R_BODY) + _tlv(2, S_BODY) + _tlv(2, b"\x01")),
    "r overruns": _tlv(0x30, b"\x02\x22" + R_BODY + _tlv(2, S_BODY)),
    "s overruns": _tlv(0x30, _tlv(2, R_BODY) + b"\x02\x21" + S_BODY),
    "nested sequence": _tlv(0x30, GOOD.der()),
    "r||s instead of DER": GOOD.compact(),
}


@pytest.mark.parametrize("name", list(NON_CANONICAL_DER))
def test_from_der_rejects_non_canonical(name):
    data = NON_CANONICAL_DER[name]
    with pytest.raises(EncodingError):
        Signature.from_der(data)
    pk = Point.from_bytes(bytes.fromhex(
        "02b838ff44e5bc177bf21189d0766082fc9d843226887fc9760371100b7ee20a6f"))
    assert not verify(pk, hashlib.sha256(b"123400").digest(), data)


def test_from_der_rejects_non_bytes():
    for bad in (GOOD.der().hex(), None, 5, list(GOOD.der())):
        with pytest.raises(EncodingError):
            Signature.from_der(bad)


@pytest.mark.parametrize("name", ["long-form seq length", "zero-padded long-form seq length",
                                  "r with extra leading zero", "s with leading zero",
                                  "long-form r length", "long-form s length"])
def test_lenient_der_reads_ber_but_never_out_of_range(name):
    assert Signature.from_der(NON_CANONICAL_DER[name], strict=False) == GOOD
    for still_bad in ("r without leading zero (negative)", "negative s", "r is zero", "r = q",
                      "trailing byte", "indefinite seq length", "third integer", "missing s"):
        with pytest.raises(EncodingError):
            Signature.from_der(NON_CANONICAL_DER[still_bad], strict=False)


def test_strict_der_accepts_only_canonical_bytes(rng):
    """Every single-byte substitution, deletion and insertion of valid encodings: whatever the
    strict decoder accepts re-encodes to exactly the same bytes (so DER is not malleable)."""
    sigs = [GOOD, Signature(1, 1), Signature(0x80, Q - 1),
            Signature(random_scalar(rng), random_scalar(rng))]
    accepted = rejected = 0
    for sig in sigs:
        der = sig.der()
        variants = [der[:i] + der[i + 1:] for i in range(len(der))]
        variants += [der[:i] + bytes([b]) + der[i:] for i in range(len(der) + 1)
                     for b in (0x00, 0x01, 0x7F, 0x80, 0xFF, 0x02, 0x30)]
        variants += [der[:i] + bytes([b]) + der[i + 1:] for i in range(len(der))
                     for b in range(256)]
        for v in variants:
            try:
                got = Signature.from_der(v)
            except EncodingError:
                rejected += 1
                continue
            accepted += 1
            assert got.der() == v
    assert accepted and rejected


# -- compact -----------------------------------------------------------------------------


def test_compact_round_trip(rng):
    for r in EDGE_VALUES + list(_random_values(rng, 50)):
        sig = Signature(r, Q - r if r < Q else 1)
        c = sig.compact()
        assert len(c) == 64
        assert Signature.from_compact(c) == sig
        assert Signature.from_compact(c, recovery_id=1).recovery_id == 1


@pytest.mark.parametrize("data", [
    b"", b"\x01" * 63, b"\x01" * 65, bytes(64), bytes(32) + b"\x01" * 32, b"\x01" * 32 + bytes(32),
    Q.to_bytes(32, "big") + b"\x01" * 32, b"\x01" * 32 + Q.to_bytes(32, "big"), b"\xff" * 64,
])
def test_from_compact_rejects(data):
    with pytest.raises(EncodingError):
        Signature.from_compact(data)


# -- low S -------------------------------------------------------------------------------


def test_normalize_low_s():
    assert normalize_low_s(5, HALF_Q, 0) == Signature(5, HALF_Q, 0)
    assert normalize_low_s(5, HALF_Q + 1, 0) == Signature(5, Q - HALF_Q - 1, 1)
    assert Q - (HALF_Q + 1) == HALF_Q  # q odd: the two halves meet
    assert normalize_low_s(5, Q - 1, 3) == Signature(5, 1, 2)
    assert normalize_low_s(5, Q - 1, None) == Signature(5, 1, None)
    for bad in ((5, 0, 0), (5, Q, 0), (5, 1, 4)):
        with pytest.raises(EncodingError):
            normalize_low_s(*bad)


def test_coincurve_signatures_verify_and_recover(rng):
    for _ in range(40):
        x = random_scalar(rng)
        digest = _digest(rng)
        sig, pk = _coincurve_sign(x, digest)
        assert sig.is_low_s
        assert normalize_low_s(sig.r, sig.s, sig.recovery_id) == sig
        for key in (pk, pk.to_bytes(), pk.to_uncompressed()):
            assert verify(key, digest, sig, strict_low_s=True)
            assert verify(key, digest, sig.der(), strict_low_s=True)
        assert verify_with_libsecp256k1(pk.to_bytes(), digest, sig)
        assert verify_with_openssl(pk.to_uncompressed(), digest, sig.der())
        assert recover_public_key(digest, sig) == pk
        assert Signature(sig.r, sig.s).with_recovery_id(pk, digest) == sig

        # the high-S twin: same signature for -R, so the y-parity bit flips
        high = Signature(sig.r, Q - sig.s, sig.recovery_id ^ 1)
        assert not high.is_low_s
        assert verify(pk, digest, high)
        assert verify(pk, digest, high.der())
        assert not verify(pk, digest, high, strict_low_s=True)
        assert not verify(pk, digest, high.der(), strict_low_s=True)
        assert not verify_with_libsecp256k1(pk.to_bytes(), digest, high)
        assert verify_with_openssl(pk.to_bytes(), digest, high)
        assert recover_public_key(digest, high) == pk
        assert _libsecp_recover(digest, high) == pk
        norm = normalize_low_s(high.r, high.s, high.recovery_id)
        assert norm == high.normalized() == sig
        assert verify(pk, digest, norm, strict_low_s=True)
        assert verify_with_libsecp256k1(pk.to_bytes(), digest, norm)

        # wrong digest, key, or recovery id
        other = bytes([digest[0] ^ 1]) + digest[1:]
        assert not verify(pk, other, sig)
        assert not verify(G * (x + 1), digest, sig)
        assert not verify(pk, digest, Signature(sig.r, sig.s + 1 if sig.s + 1 < Q else 1))
        assert recover_public_key(other, sig) != pk
        wrong = Signature(sig.r, sig.s, sig.recovery_id ^ 1)
        assert recover_public_key(digest, wrong) != pk


def test_textbook_signatures_and_recovery_id_for(rng):
    """A signer that knows R (as the threshold protocol does) derives the recovery id from it."""
    for _ in range(40):
        x, k = random_scalar(rng), random_scalar(rng)
        digest = _digest(rng)
        R, r, s = _textbook_sign(x, k, digest)
        rid = recovery_id_for(R)
        assert rid == (1 if R.y_is_odd else 0)  # x(R) >= q has probability ~2^-128
        sig = Signature(r, s, rid)
        pk = G * x
        assert verify(pk, digest, sig)
        assert recover_public_key(digest, sig) == pk == _libsecp_recover(digest, sig)
        norm = normalize_low_s(r, s, rid)
        assert norm.is_low_s and verify(pk, digest, norm, strict_low_s=True)
        assert recover_public_key(digest, norm) == pk
        assert verify_with_libsecp256k1(pk.to_bytes(), digest, norm)
        assert verify_with_openssl(pk.to_bytes(), digest, sig)
        # low-S normalisation is the signature for -R
        assert norm.recovery_id == (recovery_id_for(-R) if s > HALF_Q else rid)


def _points_with_large_x(count: int):
    """Curve points with q < x < p (x then does not fit in r: recovery id bit 1).
    (x = q itself is on the curve, but would give r = 0.)"""
    x = Q + 1
    while count:
        try:
            yield Point.from_bytes(b"\x02" + x.to_bytes(32, "big"))
            count -= 1
        except EncodingError:
            pass
        x += 1


def test_recovery_id_x_overflow(rng):
    """Build signatures whose R has x >= q (r = x - q): recover the key from the signature,
    then check it with our verifier and libsecp256k1's recovery."""
    for R0 in _points_with_large_x(3):
        for R in (R0, -R0):
            rid = recovery_id_for(R)
            assert rid & 2 and rid & 1 == R.y_is_odd
            r = R.x - Q
            s, digest = random_scalar(rng), _digest(rng)
            sig = Signature(r, s, rid)
            pk = recover_public_key(digest, sig)
            assert pk == _libsecp_recover(digest, sig)
            assert pk == inverse(r) * (R * s - G * int.from_bytes(digest, "big"))
            assert verify(pk, digest, sig)
            assert verify_with_openssl(pk.to_bytes(), digest, sig)
            assert sig.with_recovery_id(pk, digest) == sig
            # without the overflow bit a different R (x = r) is used: a different key, if any
            try:
                assert recover_public_key(digest, Signature(r, s, rid & 1)) != pk
            except EncodingError:
                pass


def test_recover_errors(rng):
    digest = _digest(rng)
    with pytest.raises(EncodingError):
        recover_public_key(digest, Signature(1, 1))  # no recovery id
    with pytest.raises(EncodingError):
        recover_public_key(digest, Signature(P - Q, 1, 2))  # x = r + q = p
    with pytest.raises(EncodingError):
        recover_public_key(digest, Signature(Q - 1, 1, 3))  # x = r + q >= 2^256
    with pytest.raises(EncodingError):
        recover_public_key(digest, GOOD.der())
    x_not_on_curve = next(x for x in range(1, 100)
                          if pow(x**3 + 7, (P - 1) // 2, P) != 1)
    with pytest.raises(EncodingError):
        recover_public_key(digest, Signature(x_not_on_curve, 1, 0))
    with pytest.raises(EncodingError):
        recover_public_key(digest[:31], Signature(1, 1, 0))
    # R = k·G and e = s·k make s·R - e·G, hence the recovered key, the point at infinity
    k = random_scalar(rng)
    R = G * k
    s = random_scalar(rng)
    e = s * k % Q
    sig = Signature(R.x % Q, s, recovery_id_for(R))
    with pytest.raises(EncodingError):
        recover_public_key(e.to_bytes(32, "big"), sig)
    with pytest.raises(EncodingError):
        Signature(1, 1).with_recovery_id(G, digest)
    with pytest.raises(EncodingError):
        recovery_id_for(Point.INFINITY)


# -- verify ------------------------------------------------------------------------------


def test_verify_special_digests(rng):
    """Digests >= q are reduced, a zero digest (u1 = 0) works; both agree with libsecp256k1."""
    x = random_scalar(rng)
    for digest in (b"\xff" * 32, Q.to_bytes(32, "big"), (Q + 5).to_bytes(32, "big"), bytes(32),
                   (1).to_bytes(32, "big")):
        sig, pk = _coincurve_sign(x, digest)
        assert verify(pk, digest, sig, strict_low_s=True)
        assert recover_public_key(digest, sig) == pk
    # a digest of q is the same as a digest of 0
    sig, pk = _coincurve_sign(x, bytes(32))
    assert verify(pk, Q.to_bytes(32, "big"), sig)


def test_verify_input_errors(rng):
    x = random_scalar(rng)
    digest = _digest(rng)
    sig, pk = _coincurve_sign(x, digest)
    for bad_digest in (digest[:31], digest + b"\x00", b"", digest.hex()):
        with pytest.raises(EncodingError):
            verify(pk, bad_digest, sig)
    unc = pk.to_uncompressed()
    for bad_key in (Point.INFINITY, b"", unc[1:], b"\x06" + unc[1:], b"\x05" + unc[1:],
                    unc[:-1] + bytes([unc[-1] ^ 1]), b"\x04" + b"\xff" * 64, pk.to_bytes()[:-1],
                    b"\x04" + P.to_bytes(32, "big") + unc[33:], "02" * 33):
        with pytest.raises(EncodingError):
            verify(bad_key, digest, sig)
    # a signature of the wrong type is not a signature: rejected, not raised
    for bad_sig in (None, 5, sig.der().hex(), sig.compact()):
        assert verify(pk, digest, bad_sig) is False
    assert verify_with_libsecp256k1(pk.to_bytes(), digest, sig.compact()) is False
    assert verify_with_openssl(pk.to_bytes(), digest, sig.compact()) is False


def test_verify_rejects_tampered_values_that_bypass_the_constructor(rng):
    x = random_scalar(rng)
    digest = _digest(rng)
    sig, pk = _coincurve_sign(x, digest)
    for field, value in (("r", sig.r + Q), ("s", sig.s + Q), ("r", 0), ("s", 0), ("s", -sig.s)):
        bad = Signature(sig.r, sig.s)
        object.__setattr__(bad, field, value)
        assert verify(pk, digest, bad) is False


def test_verify_r_reduced_mod_q():
    """x(R) >= q: r is x(R) - q, and a signature claiming r = x(R) is not even representable
    (r >= q) while one claiming r = x(R) mod q verifies."""
    R = next(_points_with_large_x(1))
    s = 7
    e = 11
    digest = e.to_bytes(32, "big")
    r = R.x - Q
    pk = inverse(r) * (R * s - G * e)
    assert verify(pk, digest, Signature(r, s))
    with pytest.raises(EncodingError):
        Signature(R.x, s)
