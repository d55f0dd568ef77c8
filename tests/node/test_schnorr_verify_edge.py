"""``POST /v1/verify`` of a ``{sig}`` at the edge (appliance/signing/schnorr_verify.py, in
process): the scheme is never guessed, the signature is exactly 64 bytes of hex and nothing
else, a body ``public_key`` is 32 bytes (for BIP340 the x of a curve point), and a valid
signature is valid under exactly the key and bytes it signed (BIP340 by libsecp256k1, Ed25519
by ``cryptography``)."""

from __future__ import annotations

import hashlib

import pytest
from coincurve import PrivateKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from appliance.errors import ServiceError
from appliance.signing.schnorr_verify import verify

DIGEST = hashlib.sha256(b"edge").digest()
_TR = PrivateKey(b"\x11" * 32)
TR_PK = _TR.public_key_xonly.format()
TR_SIG = _TR.sign_schnorr(DIGEST, b"\x00" * 32)
_ED = Ed25519PrivateKey.from_private_bytes(b"\x22" * 32)
ED_PK = _ED.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
ED_SIG = _ED.sign(DIGEST)


def _body(sig, pk, **kw):
    return {"signature": sig if isinstance(sig, dict) else {"sig": sig}, "public_key": pk, "digest": DIGEST.hex(), **kw}


def _refused(body, scheme):
    with pytest.raises(ServiceError) as e:
        verify(body, scheme, None)
    return e.value.code, e.value.message


@pytest.mark.parametrize("scheme,pk,sig", [("schnorr-bip340", TR_PK, TR_SIG), ("ed25519", ED_PK, ED_SIG)])
def test_valid_only_under_its_key_scheme_and_bytes(scheme, pk, sig):
    assert verify(_body(sig.hex(), pk.hex()), scheme, None) == {"valid": True, "scheme": scheme, "digest": DIGEST.hex()}
    other = ED_PK if scheme == "schnorr-bip340" else TR_PK
    assert not verify(_body(sig.hex(), other.hex()), scheme, None)["valid"]
    assert not verify(_body(sig.hex(), pk.hex(), digest=hashlib.sha256(b"x").hexdigest()), scheme, None)["valid"]
    flipped = bytes([sig[0] ^ 1]) + sig[1:]
    assert not verify(_body(flipped.hex(), pk.hex()), scheme, None)["valid"]


@pytest.mark.parametrize("sig", [TR_SIG[:63].hex(), (TR_SIG + b"\x00").hex(), "zz" * 64, "", None, 64,
                                 {"sig": TR_SIG.hex(), "der": "00"}])
def test_a_sig_that_is_not_64_bytes_of_hex_is_refused(sig):
    assert _refused(_body(sig, TR_PK.hex()), "schnorr-bip340") == (
        "bad_signature_format", "a schnorr-bip340 or ed25519 signature is {sig}: 64 bytes, hex")


def test_public_key_size_and_curve_point_and_scheme_checked():
    assert _refused(_body(TR_SIG.hex(), TR_PK[:31].hex()), "schnorr-bip340") == (
        "bad_public_key", "a schnorr-bip340 public_key is 32 bytes, hex (x-only)")
    assert _refused(_body(ED_SIG.hex(), "02" + ED_PK.hex()), "ed25519") == (
        "bad_public_key", "a ed25519 public_key is 32 bytes, hex")
    assert _refused(_body(TR_SIG.hex(), (5).to_bytes(32, "big").hex()), "schnorr-bip340") == (
        "bad_public_key", "public_key is not the x coordinate of a secp256k1 point")
    assert _refused(_body(TR_SIG.hex(), TR_PK.hex()), None)[0] == "bad_scheme"
    assert _refused(_body(TR_SIG.hex(), TR_PK.hex()), "ecdsa-secp256k1")[0] == "scheme_mismatch"
    assert _refused(_body(TR_SIG.hex(), TR_PK.hex(), message="both"), "schnorr-bip340")[0] == "digest_or_message"
    assert _refused(_body(TR_SIG.hex(), TR_PK.hex(), digest="00" * 31), "schnorr-bip340") == (
        "bad_digest", "digest must be exactly 32 bytes, hex")
