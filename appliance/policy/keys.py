"""A person's key: :class:`UserKey` (Ed25519 or P-256, what the policy names), and the
client side's :func:`load_private_key` / :func:`sign_message`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from appliance.policy.grammar import PolicyError
# the client side (a user's signature over statement bytes) is the client library's
from appliance_client.grammar import load_private_key as load_private_key
from appliance_client.grammar import sign_message as sign_message


@dataclass(frozen=True)
class UserKey:
    """A person's public key: ``ed25519`` (32 bytes) or ``p256`` (33-byte compressed SEC1)."""

    alg: str
    raw: bytes

    @classmethod
    def parse(cls, value: str | bytes) -> UserKey:
        """PEM (SubjectPublicKeyInfo), ``ed25519:<hex>``, ``p256:<hex>``, or bare hex
        (32 bytes: Ed25519; 33 or 65 bytes: P-256 SEC1)."""
        if isinstance(value, bytes):
            value = value.decode("ascii", "replace")
        if not isinstance(value, str):
            raise PolicyError("a public key is a string")
        text = value.strip()
        if text.startswith("-----BEGIN"):
            try:
                key = serialization.load_pem_public_key(text.encode())
            except ValueError:
                raise PolicyError("public key PEM does not parse") from None
            return cls.from_key(key)
        alg = None
        if ":" in text:
            alg, text = text.split(":", 1)
            alg = alg.lower()
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise PolicyError("a raw public key is hex") from None
        if alg is None:
            alg = "ed25519" if len(raw) == 32 else "p256"
        if alg == "ed25519":
            if len(raw) != 32:
                raise PolicyError("an Ed25519 public key is 32 bytes")
            try:
                ed25519.Ed25519PublicKey.from_public_bytes(raw)
            except ValueError:
                raise PolicyError("not an Ed25519 public key") from None
            return cls("ed25519", raw)
        if alg in ("p256", "p-256", "secp256r1"):
            try:
                key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
            except ValueError:
                raise PolicyError("not a P-256 point") from None
            return cls.from_key(key)
        raise PolicyError(f"unknown key algorithm {alg!r} (ed25519 or p256)")

    @classmethod
    def from_key(cls, key: Any) -> UserKey:
        if isinstance(key, ed25519.Ed25519PublicKey):
            return cls("ed25519", key.public_bytes(serialization.Encoding.Raw,
                                                   serialization.PublicFormat.Raw))
        if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
            return cls("p256", key.public_bytes(serialization.Encoding.X962,
                                                serialization.PublicFormat.CompressedPoint))
        raise PolicyError("user keys must be Ed25519 or ECDSA P-256")

    @property
    def text(self) -> str:
        return f"{self.alg}:{self.raw.hex()}"

    def public_key(self) -> Any:
        if self.alg == "ed25519":
            return ed25519.Ed25519PublicKey.from_public_bytes(self.raw)
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), self.raw)

    def verify(self, message: bytes, signature: bytes) -> bool:
        if not isinstance(signature, (bytes, bytearray)):
            return False
        signature = bytes(signature)
        try:
            if self.alg == "ed25519":
                if len(signature) != 64:
                    return False
                self.public_key().verify(signature, message)
                return True
            if len(signature) == 64:  # raw r||s (IEEE P1363)
                r = int.from_bytes(signature[:32], "big")
                s = int.from_bytes(signature[32:], "big")
                signature = encode_dss_signature(r, s)
            self.public_key().verify(signature, message, ec.ECDSA(hashes.SHA256()))
            return True
        except (InvalidSignature, ValueError):
            return False


