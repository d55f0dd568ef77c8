"""What a PKCS#11 token can do of what a node needs: each need tried for real on the token.

A mechanism list is not enough (tpm2-pkcs11 1.9 lists CKM_AES_KEY_GEN and answers
C_GenerateKey with CKR_FUNCTION_NOT_SUPPORTED), so every check below runs the operation
the node runs, with the node's own key templates (:mod:`hsm.token`), on objects labelled
``appliance-probe/...`` that are destroyed before the probe returns. The node's own keys
are never touched. Needs (in order; a check whose prerequisite failed is reported as
such, not tried):

=====================  ==================================================================
aes256_token_key       C_GenerateKey CKM_AES_KEY_GEN, 256 bits, token object, the KEK's
                       template (sensitive, non-extractable, ENCRYPT/DECRYPT only)
aes_gcm_aad            CKM_AES_GCM encrypt and decrypt with a 12-byte IV and AAD; a
                       flipped tag bit refused
find_by_label          the key found again by CKA_LABEL (one match)
ec_secp256k1_sign      C_GenerateKeyPair on secp256k1 with the identity key's templates,
                       CKM_ECDSA over a 32-byte digest, the signature verifies
ec_p256_sign           the same on P-256
ecdh_p256_derive       a P-256 key pair with the transport key's templates, then
                       CKM_ECDH1_DERIVE with CKD_NULL into a readable session secret equal
                       to the software ECDH result
destroy                C_DestroyObject on each object the probe made
=====================  ==================================================================

Command line::

    python -m hsm.probe --module PATH --token-label L (--pin-env VAR | --pin-file F)
                        [--softhsm-conf FILE]

prints one JSON object ``{"module", "token", "checks": {name: {"ok", "detail"}}}`` and
exits 0 when every need is met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pkcs11
from asn1crypto.core import OctetString
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from pkcs11 import Attribute as A
from pkcs11 import KeyType, Mechanism, ObjectClass
from pkcs11.util.ec import encode_named_curve_parameters

from hsm.config import HSMConfig
from hsm.errors import HSMError, HSMPinError, HSMTokenNotFoundError
from hsm.key_policy import NO_CAPS_SECRET, PUBLIC_KEY_TEMPLATE, aes_key_template, ec_private_template
from hsm.worker import get_worker, module_state

PROBE_PREFIX = "appliance-probe/"
NEEDS = ("aes256_token_key", "aes_gcm_aad", "find_by_label", "ec_secp256k1_sign",
         "ec_p256_sign", "ecdh_p256_derive", "destroy")
_CURVES = {"secp256k1": ec.SECP256K1(), "secp256r1": ec.SECP256R1()}


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: str


# return values python-pkcs11 0.10 has no exception class for
_UNMAPPED = {"0x1b": "CKR_ACTION_PROHIBITED", "0x140": "CKR_CURVE_NOT_SUPPORTED"}


def _why(exc: BaseException) -> str:
    name = type(exc).__name__
    text = str(exc).strip()
    code = text.rsplit(" ", 1)[-1] if text.startswith("Unmapped error code") else ""
    if code in _UNMAPPED:
        return f"{_UNMAPPED[code]} ({code})"
    return f"{name}: {text}" if text and text != name else name


class _Refused(Exception):
    """A need met only with a weaker template than the node's."""


_V240 = (A.COPYABLE, A.DESTROYABLE)


class _Probe:
    """Runs on the PKCS#11 worker thread."""

    def __init__(self, session: Any) -> None:
        self.s = session
        self.made: list[Any] = []
        self.out: dict[str, Check] = {}
        self.aes_key: Any = None

    def run(self, name: str, needs: tuple[str, ...], fn: Callable[[], str]) -> None:
        """``needs``: attributes of this probe (objects made by earlier checks)."""
        missing = [n for n in needs if getattr(self, n, None) is None]
        if missing:
            self.out[name] = Check(False, f"not tried: no {', '.join(missing)}")
            return
        try:
            self.out[name] = Check(True, fn())
        except _Refused as exc:
            self.out[name] = Check(False, str(exc))
        except Exception as exc:  # every refusal is a finding, reported by name
            self.out[name] = Check(False, _why(exc))

    def generate(self, make: Callable[[dict], Any], template: dict) -> Any:
        """``make(template)``; a PKCS#11 2.20 token refuses CKA_COPYABLE and
        CKA_DESTROYABLE (CKR_ATTRIBUTE_TYPE_INVALID): then the object is made without
        them, so the checks after this one still run, and the need counts as unmet."""
        try:
            return make(template), None
        except pkcs11.exceptions.AttributeTypeInvalid:
            pass
        reduced = {k: v for k, v in template.items() if k not in _V240}
        obj = make(reduced)
        return obj, _Refused(
            "AttributeTypeInvalid: the token does not know "
            f"{', '.join('CKA_' + a.name for a in _V240 if a in template)} (PKCS#11 2.20); "
            "made without them"
        )

    # -- the needs --------------------------------------------------------------------
    def aes(self) -> str:
        key, refused = self.generate(
            lambda t: self.s.generate_key(KeyType.AES, 256, label=PROBE_PREFIX + "aes",
                                          id=b"probe", store=True, template=t),
            aes_key_template(destroyable=True),
        )
        self.made.append(key)
        self.aes_key = key
        if refused:
            raise refused
        return "generated"

    def gcm(self) -> str:
        iv, aad, msg = os.urandom(12), b"probe-aad", os.urandom(40)
        param = pkcs11.GCMParams(iv, aad)
        ct = self.aes_key.encrypt(msg, mechanism=Mechanism.AES_GCM, mechanism_param=param)
        if self.aes_key.decrypt(ct, mechanism=Mechanism.AES_GCM, mechanism_param=param) != msg:
            raise HSMError("decrypt did not return the plaintext")
        bad = ct[:-1] + bytes([ct[-1] ^ 1])
        try:
            self.aes_key.decrypt(bad, mechanism=Mechanism.AES_GCM, mechanism_param=param)
        except pkcs11.PKCS11Error:
            return "round trip; bad tag refused"
        raise HSMError("a flipped tag bit was accepted")

    def find(self) -> str:
        key = self.s.get_key(object_class=ObjectClass.SECRET_KEY, label=PROBE_PREFIX + "aes")
        return f"found {key.label!r}"

    def _pair(self, curve: str, capability: Any, what: str) -> tuple[Any, Any, Any]:
        params = self.s.create_domain_parameters(
            KeyType.EC, {A.EC_PARAMS: encode_named_curve_parameters(curve)}, local=True
        )
        # the node's template, but destroyable: the probe leaves nothing behind
        (pub, priv), refused = self.generate(
            lambda t: params.generate_keypair(
                store=True, label=PROBE_PREFIX + what, id=b"probe", capabilities=0,
                public_template=dict(PUBLIC_KEY_TEMPLATE), private_template=t,
            ),
            {**ec_private_template(capability), A.DESTROYABLE: True},
        )
        self.made += [pub, priv]
        return pub, priv, refused

    def sign(self, curve: str) -> str:
        pub, priv, refused = self._pair(curve, A.SIGN, "identity-" + curve)
        point = bytes(OctetString.load(pub[A.EC_POINT]))
        digest = os.urandom(32)
        sig = priv.sign(digest, mechanism=Mechanism.ECDSA)
        r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
        key = ec.EllipticCurvePublicKey.from_encoded_point(_CURVES[curve], point)
        key.verify(encode_dss_signature(r, s), digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        if refused:
            raise refused
        return "signature verifies"

    def ecdh(self) -> str:
        pub, priv, refused = self._pair("secp256r1", A.DERIVE, "transport")
        eph = ec.generate_private_key(ec.SECP256R1())
        point = eph.public_key().public_bytes(serialization.Encoding.X962,
                                              serialization.PublicFormat.UncompressedPoint)
        z = priv.derive_key(
            KeyType.GENERIC_SECRET, 256, capabilities=0, mechanism=Mechanism.ECDH1_DERIVE,
            mechanism_param=(pkcs11.KDF.NULL, None, point),
            template={A.TOKEN: False, A.SENSITIVE: False, A.EXTRACTABLE: True,
                      A.PRIVATE: True, **NO_CAPS_SECRET},
        )
        try:
            value = z[A.VALUE]
        finally:
            z.destroy()
        token_point = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), bytes(OctetString.load(pub[A.EC_POINT]))
        )
        if value != eph.exchange(ec.ECDH(), token_point):
            raise HSMError("the derived secret differs from the software ECDH result")
        if refused:
            raise refused
        return "derived secret read and equal to software ECDH"

    def destroy(self) -> str:
        errors = self.cleanup()
        if errors:
            raise HSMError("; ".join(errors))
        return "every probe object destroyed"

    def cleanup(self) -> list[str]:
        errors = []
        for obj in reversed(self.made):
            try:
                obj.destroy()
            except Exception as exc:
                errors.append(_why(exc))
        self.made = []
        return errors


def _run(config: HSMConfig, pin: str) -> tuple[str, dict[str, Check]]:
    conf = str(config.softhsm_conf) if config.softhsm_conf is not None else None
    st = module_state(config.module)
    st.ensure(conf)
    try:
        token = st.lib.get_token(token_label=config.token_label)
    except pkcs11.exceptions.NoSuchToken:
        st.rescan()
        try:
            token = st.lib.get_token(token_label=config.token_label)
        except pkcs11.exceptions.NoSuchToken:
            raise HSMTokenNotFoundError(
                f"no token labelled {config.token_label!r} is present"
            ) from None
    try:
        session = token.open(rw=True, user_pin=pin)
    except (pkcs11.exceptions.PinIncorrect, pkcs11.exceptions.PinInvalid,
            pkcs11.exceptions.PinLenRange):
        raise HSMPinError(f"token {config.token_label!r} refused the PIN") from None
    p = _Probe(session)
    try:
        for obj in session.get_objects({A.LABEL: PROBE_PREFIX + "aes"}):  # an old run's
            obj.destroy()
        p.run("aes256_token_key", (), p.aes)
        p.run("aes_gcm_aad", ("aes_key",), p.gcm)
        p.run("find_by_label", ("aes_key",), p.find)
        p.run("ec_secp256k1_sign", (), lambda: p.sign("secp256k1"))
        p.run("ec_p256_sign", (), lambda: p.sign("secp256r1"))
        p.run("ecdh_p256_derive", (), p.ecdh)
        p.run("destroy", (), p.destroy)
    finally:
        p.cleanup()
        session.close()
    desc = f"{token.manufacturer_id.strip()} {token.model.strip()}".strip()
    return desc, p.out


def probe(config: HSMConfig) -> tuple[str, dict[str, Check]]:
    """(token description, {need: Check}) for the token of ``config``; nothing of the
    node's is touched. Raises :class:`HSMTokenNotFoundError`, :class:`HSMPinError`,
    :class:`hsm.errors.HSMModuleError`."""
    pin = config.read_pin().reveal()
    return get_worker().call(_run, config, pin)


def _main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hsm.probe")
    ap.add_argument("--module", required=True)
    ap.add_argument("--token-label", required=True)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--pin-env")
    g.add_argument("--pin-file", type=Path)
    ap.add_argument("--softhsm-conf", type=Path)
    args = ap.parse_args(argv)
    try:
        cfg = HSMConfig(token_label=args.token_label, module=args.module,
                        pin_env=args.pin_env, pin_file=args.pin_file,
                        softhsm_conf=args.softhsm_conf)
        desc, checks = probe(cfg)
    except HSMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({
        "module": args.module, "token": desc,
        "checks": {k: {"ok": c.ok, "detail": c.detail} for k, c in checks.items()},
    }))
    return 0 if all(c.ok for c in checks.values()) else 1


if __name__ == "__main__":
    sys.exit(_main())
