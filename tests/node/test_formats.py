"""Key and signature formats (issue 15 item 5) in process, each checked by an independent
implementation: SPKI DER/PEM by cryptography and the openssl command, addresses by
eth-account and the BIP173/base58 vectors, r||s||v by eth-account's ecrecover and
libsecp256k1 (coincurve), the ES256K JWS by PyJWT; and /v1/verify's service with its exact
error codes."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess

import coincurve
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from eth_account import Account

from api.client import jws_signing_input
from appliance import formats
from appliance.cli import main
from appliance.errors import ServiceError
from appliance.tss.ecdsa import Signature
from appliance.tss.frost import simulate as frost
from tests.node.test_services_requests import KEY, _setup

SK = coincurve.PrivateKey((1).to_bytes(32, "big"))  # private key 1: the public key is G
PK = SK.public_key.format()
#: id-ecPublicKey (1.2.840.10045.2.1) + secp256k1 (1.3.132.0.10), then the 65-byte point
SPKI_PREFIX = bytes.fromhex("3056301006072a8648ce3d020106052b8104000a034200")


def _signed(digest: bytes, key: coincurve.PrivateKey = SK) -> dict:
    raw = key.sign_recoverable(digest, hasher=None)  # r || s || recovery id, low-S
    return Signature.from_compact(raw[:64], recovery_id=raw[64]).to_dict()


def test_spki_der_and_pem_are_what_kms_returns_and_load_in_cryptography_and_openssl(tmp_path):
    f = formats.public_key_formats(PK, "mainnet")
    der = base64.b64decode(f["public_key_spki_der"])
    assert der == SPKI_PREFIX + SK.public_key.format(compressed=False)
    for key in (serialization.load_der_public_key(der), serialization.load_pem_public_key(f["public_key_pem"].encode())):
        assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256k1"
        assert key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint) == PK
    pem = tmp_path / "key.pem"
    pem.write_text(f["public_key_pem"])
    out = subprocess.run(["openssl", "pkey", "-pubin", "-in", str(pem), "-noout", "-text"],
                         capture_output=True, text=True, check=True).stdout
    assert "ASN1 OID: secp256k1" in out
    assert f["public_key_uncompressed"] == SK.public_key.format(compressed=False).hex()


def test_addresses_match_eth_account_and_the_bitcoin_vectors():
    main, test = formats.addresses(PK, "mainnet"), formats.addresses(PK, "testnet")
    assert main["eth"] == Account.from_key(SK.secret).address == test["eth"]
    assert main["eth"] == "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"
    assert main["p2wpkh"] == "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"  # BIP173's vector for G
    assert main["p2pkh"] == "1BgGZ9tcN4rm9KBzDn7KprQz87SZ26SAMH"
    assert test["p2wpkh"].startswith("tb1q") and test["p2pkh"][0] in "mn" and test["network"] == "testnet"


def test_a_cached_view_is_a_copy():
    a = formats.public_key_formats(PK, "mainnet")
    a["addresses"]["eth"] = "x"
    assert formats.public_key_formats(PK, "mainnet")["addresses"]["eth"] != "x"


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_rsv_recovers_the_key_in_eth_account_and_libsecp256k1(seed):
    key = coincurve.PrivateKey(hashlib.sha256(bytes([seed])).digest())
    digest = hashlib.sha256(b"rsv %d" % seed).digest()
    view = formats.signature_formats(_signed(digest, key))
    raw = bytes.fromhex(view["rsv"])
    assert len(raw) == 65 and raw[64] == 27 + view["recovery_id"]
    assert Account._recover_hash(digest, signature=raw) == Account.from_key(key.secret).address
    assert coincurve.PublicKey.from_signature_and_message(raw[:64] + bytes([raw[64] - 27]), digest,
                                                          hasher=None).format() == key.public_key.format()


def test_no_rsv_without_a_recovery_id():
    view = _signed(b"\x22" * 32)
    view["recovery_id"] = None
    assert "rsv" not in formats.signature_formats(view)


def test_a_jws_of_the_signed_signing_input_verifies_in_pyjwt():
    signing_input = jws_signing_input({"typ": "JWT"}, b'{"sub":"appliance","n":1}')
    view = _signed(formats.jws_digest(signing_input))
    token = formats.jws_compact(signing_input, view)
    assert jwt.get_unverified_header(token)["alg"] == "ES256K"
    pem = formats.public_key_formats(PK, "mainnet")["public_key_pem"]
    assert jwt.decode(token, pem, algorithms=["ES256K"]) == {"sub": "appliance", "n": 1}
    other = formats.public_key_formats(coincurve.PrivateKey(b"\x02" * 32).public_key.format(), "mainnet")
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, other["public_key_pem"], algorithms=["ES256K"])


# -- /v1/verify's service -----------------------------------------------------------------


def _verify(body: dict) -> dict:
    _users, _rt, svc, _sr, _ran, _ports = _setup()
    return svc.verify(body)


MSG = b"pay 1 BTC to bob"
SIG = _signed(hashlib.sha256(MSG).digest())


@pytest.mark.parametrize("message,encoding", [(MSG.hex(), None), (MSG.hex(), "hex"),
                                              (base64.b64encode(MSG).decode(), "base64"), (MSG.decode(), "utf8")])
def test_verify_hashes_a_message_in_each_encoding(message, encoding):
    body = {"public_key": PK.hex(), "message": message, "signature": SIG["der"]}
    if encoding:
        body["message_encoding"] = encoding
    assert _verify(body) == {"valid": True, "low_s": True, "digest": hashlib.sha256(MSG).hexdigest()}


@pytest.mark.parametrize("form", ["der", "rs", "rsv", "jws", "view"])
def test_verify_takes_every_signature_form(form):
    view = formats.signature_formats(SIG)
    sig = {"der": view["der"], "rs": {"r": view["r"], "s": view["s"]}, "rsv": {"rsv": view["rsv"]},
           "jws": {"jws": view["jws"]}, "view": view}[form]
    digest = hashlib.sha256(MSG).hexdigest()
    assert _verify({"public_key": PK.hex(), "digest": digest, "signature": sig})["valid"] is True
    assert _verify({"public_key": PK.hex(), "digest": "00" * 32, "signature": sig})["valid"] is False


def test_an_rsv_whose_v_recovers_another_key_is_not_valid():
    view = formats.signature_formats(SIG)
    flipped = view["rsv"][:-2] + ("1c" if view["rsv"].endswith("1b") else "1b")
    body = {"public_key": PK.hex(), "message": MSG.hex()}
    assert _verify({**body, "signature": {"rsv": view["rsv"]}})["valid"] is True
    assert _verify({**body, "signature": {"rsv": flipped}})["valid"] is False


ERRORS = [
    ({"digest": "11" * 32, "message": "00"}, "digest_or_message",
     "give exactly one of digest (32 bytes hex) and message (its SHA-256 is verified)"),
    ({}, "digest_or_message", "give exactly one of digest (32 bytes hex) and message (its SHA-256 is verified)"),
    ({"digest": "11" * 31}, "bad_digest", "digest must be exactly 32 bytes, hex"),
    ({"digest": "zz" * 32}, "bad_digest", "digest must be exactly 32 bytes, hex"),
    ({"digest": 5}, "bad_digest", "digest must be exactly 32 bytes, hex"),
    ({"digest": "11" * 32, "message_encoding": "hex"}, "bad_message_encoding",
     "message_encoding goes with message, not digest"),
    ({"message": "0g"}, "bad_message", "message is not hex"),
    ({"message": "***", "message_encoding": "base64"}, "bad_message", "message is not base64"),
    ({"message": "00", "message_encoding": "latin1"}, "bad_message_encoding",
     "message_encoding must be one of hex, base64, utf8"),
    ({"message": "00" * (formats.MAX_MESSAGE_BYTES + 1)}, "bad_message", "message is over 524288 bytes"),
    ({"message": "00", "signature": 5}, "bad_signature_format",
     "signature: DER hex, or {der}, {r, s}, {rsv} or {jws}"),
    ({"message": "00", "signature": {}}, "bad_signature_format",
     "signature: DER hex, or {der}, {r, s}, {rsv} or {jws}"),
    ({"message": "00", "signature": {"der": SIG["der"], "r": SIG["s"], "s": SIG["r"]}}, "bad_signature_format",
     "signature: der, r are not the same signature"),
    ({"message": "00", "signature": "3000"}, "bad_signature_der",
     "der must be the strict DER encoding (hex) of r and s in [1, q-1]"),
    ({"message": "00", "signature": {"r": SIG["r"]}}, "bad_signature_r", "r and s must be 32 bytes hex each, in [1, q-1]"),
    ({"message": "00", "signature": {"s": SIG["s"]}}, "bad_signature_r", "r and s must be 32 bytes hex each, in [1, q-1]"),
    ({"message": "00", "signature": {"rsv": SIG["r"] + SIG["s"]}}, "bad_signature_rsv",
     "rsv must be 65 bytes hex (r || s || v)"),
    ({"message": "00", "signature": {"rsv": SIG["r"] + SIG["s"] + "1d"}}, "bad_signature_rsv",
     "rsv must be 65 bytes hex (r || s || v), r and s in [1, q-1], v 27 or 28 (or 0 or 1)"),
    ({"message": "00", "signature": {"jws": "AAAA"}}, "bad_signature_jws",
     "jws must be base64url of r || s (64 bytes), r and s in [1, q-1]"),
]


@pytest.mark.parametrize("body,code,message", ERRORS)
def test_verify_names_each_bad_combination(body, code, message):
    body = {"public_key": PK.hex(), "signature": SIG["der"], **body}
    with pytest.raises(ServiceError) as exc:
        _verify(body)
    assert (exc.value.code, exc.value.message) == (code, message)


def test_verify_needs_a_key_and_finds_it_by_id():
    with pytest.raises(ServiceError) as exc:
        _verify({"message": MSG.hex(), "signature": SIG["der"]})
    assert (exc.value.code, exc.value.message) == ("missing_public_key", "give public_key (SEC1 hex) or key_id")
    # the fake key store's key is G (private key 1): the key id finds it
    _users, _rt, svc, _sr, _ran, ports = _setup()
    ports.key_store.rows[KEY] = {"key_id": KEY, "public_key": PK, "status": "active"}
    assert svc.verify({"key_id": KEY, "message": MSG.hex(), "signature": SIG["der"]})["valid"] is True


# -- appliance verify (the CLI, local: libsecp256k1 and OpenSSL) ----------------------------


def test_cli_verify_takes_a_message_file_and_rsv(tmp_path, capsys):
    msg = tmp_path / "msg.bin"
    msg.write_bytes(MSG)
    view = formats.signature_formats(SIG)
    flipped = view["rsv"][:-2] + ("1c" if view["rsv"].endswith("1b") else "1b")
    for sig_args, ok in ((["--signature", view["der"]], True), (["--rsv", view["rsv"]], True),
                         (["--rsv", flipped], False)):
        rc = main(["verify", "--public-key", PK.hex(), "--message", str(msg), *sig_args])
        out = json.loads(capsys.readouterr().out)
        assert (rc == 0, out["valid"], out["digest"]) == (ok, ok, hashlib.sha256(MSG).hexdigest())
    assert main(["verify", "--public-key", PK.hex(), "--signature", view["der"]]) == 2  # usage
    assert capsys.readouterr().err == "error: usage: give exactly one of --digest and --message\n"


def test_cli_verify_schnorr_schemes(tmp_path, capsys):
    """``appliance verify --scheme``: a BIP340 signature (libsecp256k1 and our verifier) over a
    digest, an Ed25519 one (OpenSSL and libsodium) over a message file's bytes; a changed
    signature fails (exit 7) and an ECDSA form is a usage error."""
    msg = tmp_path / "msg.bin"
    msg.write_bytes(b"pay alice 1 SOL")
    tr = frost.keygen(3, 2, "schnorr-bip340")
    ed = frost.keygen(3, 2, "ed25519")
    digest = hashlib.sha256(b"taproot").digest()
    cases = [("schnorr-bip340", tr[0].public_key, frost.sign(tr, digest), ["--digest", digest.hex()],
              {"libsecp256k1", "bip340"}),
             ("ed25519", ed[0].public_key, frost.sign(ed, msg.read_bytes()), ["--message", str(msg)],
              {"openssl", "libsodium"})]
    for scheme, pk, sig, what, libs in cases:
        bad = sig[:-1] + bytes([sig[-1] ^ 1])
        for s, ok in ((sig, True), (bad, False)):
            rc = main(["verify", "--scheme", scheme, "--public-key", pk.hex(), *what, "--signature", s.hex()])
            captured = capsys.readouterr()
            assert rc == (0 if ok else 7), captured
            if ok:
                out = json.loads(captured.out)
                assert out["valid"] is True and out["scheme"] == scheme and {k for k in libs if out[k]} == libs
    assert main(["verify", "--scheme", "ed25519", "--public-key", "11" * 32, "--digest", "00" * 32,
                 "--rsv", "00" * 65]) == 2
    assert capsys.readouterr().err == ("error: usage: --rsv is an ECDSA form: a ed25519 signature is --signature "
                                       "(64 bytes hex)\n")
