"""``appliance verify``: a signature checked here, by two independent implementations per
scheme (no node involved): ECDSA by libsecp256k1 and OpenSSL (and ``--rsv``'s recovery id),
BIP340 by libsecp256k1 and our verifier, Ed25519 by OpenSSL and libsodium. Exit 7 when it
does not verify."""

from __future__ import annotations

import hashlib
import json

from appliance.cli_errors import UsageError, VerificationFailed


def cmd_verify(args) -> int:
    from appliance.tss.ecdsa import Signature, recover_public_key, verify_with_libsecp256k1, verify_with_openssl
    from appliance.tss.group import Point

    if (args.digest is None) == (args.message is None):
        raise UsageError("give exactly one of --digest and --message")
    if (args.signature is None) == (args.rsv is None):
        raise UsageError("give exactly one of --signature and --rsv")
    if args.scheme != "ecdsa-secp256k1":
        return verify_schnorr(args)
    pk = bytes.fromhex(args.public_key)
    digest = bytes.fromhex(args.digest) if args.digest else hashlib.sha256(args.message.read_bytes()).digest()
    if args.rsv is not None:
        raw = bytes.fromhex(args.rsv)
        if len(raw) != 65 or raw[64] not in (0, 1, 27, 28):
            raise UsageError("--rsv is 65 bytes hex (r || s || v, v 27 or 28, or 0 or 1)")
        sig = Signature.from_compact(raw[:64], recovery_id=raw[64] % 27)
    else:
        sig = Signature.from_der(bytes.fromhex(args.signature))
    ok1, ok2 = verify_with_libsecp256k1(pk, digest, sig), verify_with_openssl(pk, digest, sig)
    out = {"valid": ok1 and ok2, "libsecp256k1": ok1, "openssl": ok2, "digest": digest.hex()}
    if sig.recovery_id is not None:  # --rsv: its v must recover the key too
        out["recovers"] = ok1 and recover_public_key(digest, sig).to_bytes() == Point.from_bytes(pk).to_bytes()
        out["valid"] = out["valid"] and out["recovers"]
    if out["valid"] or not args.json:  # --json: the error document is the answer
        print(json.dumps(out))
    if not out["valid"]:
        raise VerificationFailed(f"the signature does not verify for {args.public_key} over digest {digest.hex()}")
    return 0


def verify_schnorr(args) -> int:
    """``appliance verify --scheme schnorr-bip340|ed25519``: a 64-byte ``--signature`` (hex) by a
    32-byte ``--public-key``, over the ``--digest`` or the ``--message`` file (its SHA-256 for
    BIP340, its bytes for Ed25519, as the nodes sign them), by two implementations each:
    libsecp256k1 and our BIP340 verifier, or OpenSSL (``cryptography``) and libsodium (PyNaCl)."""
    from coincurve import PublicKeyXOnly
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from nacl.exceptions import BadSignatureError
    from nacl.signing import VerifyKey

    from appliance.tss.frost import taproot

    if args.rsv is not None:
        raise UsageError(f"--rsv is an ECDSA form: a {args.scheme} signature is --signature (64 bytes hex)")
    try:
        pk, sig = bytes.fromhex(args.public_key), bytes.fromhex(args.signature)
    except ValueError:
        raise UsageError("--public-key and --signature are hex") from None
    if len(pk) != 32 or len(sig) != 64:
        raise UsageError(f"a {args.scheme} --public-key is 32 bytes and --signature 64 bytes, hex")
    data = bytes.fromhex(args.digest) if args.digest else args.message.read_bytes()
    digest = data if args.digest else hashlib.sha256(data).digest()
    signed = digest if args.scheme == "schnorr-bip340" else data
    if args.scheme == "schnorr-bip340":
        try:
            ok1 = bool(PublicKeyXOnly(pk).verify(sig, signed))
        except ValueError:
            ok1 = False
        out = {"libsecp256k1": ok1, "bip340": taproot.verify(pk, signed, sig)}
    else:
        try:
            Ed25519PublicKey.from_public_bytes(pk).verify(sig, signed)
            ok1 = True
        except (InvalidSignature, ValueError):
            ok1 = False
        try:
            ok2 = VerifyKey(pk).verify(signed, sig) == signed
        except (BadSignatureError, ValueError):
            ok2 = False
        out = {"openssl": ok1, "libsodium": ok2}
    out = {"valid": all(out.values()), "scheme": args.scheme, **out, "digest": digest.hex()}
    if out["valid"] or not args.json:
        print(json.dumps(out))
    if not out["valid"]:
        raise VerificationFailed(f"the {args.scheme} signature does not verify for {args.public_key}")
    return 0
