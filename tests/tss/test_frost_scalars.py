"""The scalar fields of the FROST groups (issue 16: "secret scalars never in variable-time
Python big-int operations beyond what the libraries expose"): secp256k1 scalars are 32-byte
encodings whose arithmetic is libsecp256k1's ``secp256k1_ec_seckey_*`` (zero cases included),
checked against integer arithmetic at the edges; a whole Taproot keygen and tweaked sign runs
with every secp256k1 scalar operation recorded at the cffi boundary; received scalars and
elements are checked canonical (Ed25519: prime order, so no small-order or mixed point)."""

from __future__ import annotations

import hashlib

import nacl.bindings as na
import pytest

from appliance.errors import EncodingError
from appliance.tss.frost import groups, simulate
from appliance.tss.frost.groups import ED25519, ED25519_L, SECP256K1, _SeckeyOps
from appliance.tss.frost.suites import expand_message_xmd
from appliance.tss.group import Q, SeededRNG

EDGES = [0, 1, 2, Q - 1, Q - 2, 2**192, 2**255, Q // 2,
         *(int.from_bytes(hashlib.sha256(bytes([i])).digest(), "big") % Q for i in range(6))]


def _b(n: int) -> bytes:
    return n.to_bytes(32, "big")


def test_secp256k1_scalar_arithmetic_matches_the_integers_at_the_edges():
    G = SECP256K1
    for a in EDGES:
        assert G.neg(_b(a)) == _b(-a % Q)
        for b in EDGES:
            assert G.add(_b(a), _b(b)) == _b((a + b) % Q), (a, b)
            assert G.sub(_b(a), _b(b)) == _b((a - b) % Q), (a, b)
            assert G.mul(_b(a), _b(b)) == _b(a * b % Q), (a, b)
    for seed in range(8):
        wide = expand_message_xmd(bytes([seed]), b"edge", 48)
        assert G.reduce_wide(wide) == _b(int.from_bytes(wide, "big") % Q)
    for wide in (bytes(48), b"\xff" * 48, bytes(24) + b"\x01" * 24, b"\x01" * 24 + bytes(24)):
        assert G.reduce_wide(wide) == _b(int.from_bytes(wide, "big") % Q)
    assert G.inv(_b(3)) == _b(pow(3, -1, Q))
    # the arithmetic has no int path left: an int is refused at the cffi boundary
    with pytest.raises(TypeError):
        G.add(5, 7)


@pytest.mark.parametrize("G,order,endian", [(SECP256K1, Q, "big"), (ED25519, ED25519_L, "little")],
                         ids=["secp256k1", "ed25519"])
def test_received_scalars_must_be_canonical(G, order, endian):
    for ok in (0, 1, order - 1):
        assert G.deserialize_scalar(ok.to_bytes(32, endian)) == ok.to_bytes(32, endian)
    for bad in (order, order + 1, 2**256 - 1):
        with pytest.raises(EncodingError) as err:
            G.deserialize_scalar(bad.to_bytes(32, endian))
        assert str(err.value) == f"{G.name} scalar not below the group order"


class _Recording:
    """libsecp256k1's ``lib`` seen through the calls ``_SeckeyOps`` makes (and their types)."""

    def __init__(self, lib) -> None:
        self._lib = lib
        self.calls: dict[str, int] = {}

    def __getattr__(self, name):
        fn = getattr(self._lib, name)

        def call(ctx, buf, *args):
            assert all(isinstance(a, bytes) and len(a) == 32 for a in args)
            self.calls[name] = self.calls.get(name, 0) + 1
            return fn(ctx, buf, *args)

        return call


def test_taproot_keygen_and_sign_do_their_scalar_arithmetic_in_libsecp256k1(monkeypatch):
    rec = _Recording(groups._lib)
    monkeypatch.setattr(SECP256K1, "_ops", _SeckeyOps(lib=rec))
    shares = simulate.keygen(3, 2, "schnorr-bip340", rng=SeededRNG(b"ct"))
    assert all(isinstance(s.sk(), bytes) for s in shares)
    keygen_calls = dict(rec.calls)
    assert keygen_calls.keys() >= {"secp256k1_ec_seckey_verify", "secp256k1_ec_seckey_tweak_add",
                                   "secp256k1_ec_seckey_tweak_mul"}
    sig = simulate.sign(shares, b"ct", merkle_root=b"", rng=SeededRNG(b"ct-sign"))
    assert len(sig) == 64
    # nonce hashing (H3), the tweak of the share and z_i = d + e·ρ + λ·sk·c: all recorded
    for name in ("secp256k1_ec_seckey_tweak_add", "secp256k1_ec_seckey_tweak_mul"):
        assert rec.calls[name] > keygen_calls[name]


ED25519_REFUSED = {
    # the eight small-order points (libsodium's list), the identity among them
    "identity": "01" + "00" * 31,
    "order 2": "ec" + "ff" * 30 + "7f",
    "order 4": "00" * 32,
    "order 4, sign bit": "00" * 31 + "80",
    "order 8 a": "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "order 8 a, sign bit": "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    "order 8 b": "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "order 8 b, sign bit": "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    # non-canonical y (y = p, y = p + 1) and a y with no point
    "y = p": "ed" + "ff" * 30 + "7f",
    "y = p + 1": "ee" + "ff" * 30 + "7f",
    "not on the curve": "02" + "00" * 31,
}


def test_received_ed25519_elements_are_prime_order_canonical_points():
    """crypto_core_ed25519_is_valid_point refuses small order (identity included),
    non-canonical encodings and a point with a torsion component."""
    base = ED25519.base_mul(ED25519.ONE)
    mixed = na.crypto_core_ed25519_add(base, bytes.fromhex(ED25519_REFUSED["order 8 a"]))
    for name, enc in [*ED25519_REFUSED.items(), ("B + T8", mixed.hex())]:
        with pytest.raises(EncodingError) as err:
            ED25519.deserialize_element(bytes.fromhex(enc))
        assert str(err.value) == ("ed25519 element is not a canonical prime-order point "
                                  "(or is the identity)"), name
    assert ED25519.deserialize_element(base) == base


def test_received_secp256k1_elements_are_strict_compressed_points():
    g = SECP256K1.base_mul(SECP256K1.ONE).to_bytes()
    cases = {
        "uncompressed": (b"\x04" + bytes(64), "point must be 33 bytes of compressed SEC1"),
        "bad prefix": (b"\x05" + g[1:], "point prefix must be 02 or 03"),
        "x = p": (b"\x02" + (2**256 - 2**32 - 977).to_bytes(32, "big"), "point x-coordinate not below the field prime"),
        "not on the curve": (b"\x02" + (5).to_bytes(32, "big"), "point is not on secp256k1"),
        "infinity": (b"\x00", "point must be 33 bytes of compressed SEC1"),
    }
    for name, (enc, msg) in cases.items():
        with pytest.raises(EncodingError) as err:
            SECP256K1.deserialize_element(enc)
        assert str(err.value) == msg, name
