"""A software WebAuthn authenticator for tests: makes ES256 (P-256) and EdDSA (Ed25519)
credentials with `cryptography`, their COSE_Key with `cbor2`, and assertions as a browser
would return them from ``navigator.credentials.get``: authenticatorData (rpIdHash, flags,
sign counter), clientDataJSON (type, challenge, origin) and the signature over
authenticatorData || SHA-256(clientDataJSON). Every field can be bent to make the refusals."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass, field

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from appliance_client.statements import WebAuthnAssertion, b64url

FLAG_UP, FLAG_UV = 0x01, 0x04


@dataclass
class SoftPasskey:
    alg: int  # -7 ES256, -8 EdDSA
    rp_id: str
    origin: str
    label: str = "soft"
    counter: int = 0          # the next assertion uses counter + step (0 step: no counter)
    step: int = 1
    credential_id: bytes = field(default_factory=lambda: os.urandom(16))

    def __post_init__(self) -> None:
        if self.alg == -7:
            self.key = ec.generate_private_key(ec.SECP256R1())
            nums = self.key.public_key().public_numbers()
            self.cose = cbor2.dumps({1: 2, 3: -7, -1: 1, -2: nums.x.to_bytes(32, "big"),
                                     -3: nums.y.to_bytes(32, "big")})
        elif self.alg == -8:
            self.key = ed25519.Ed25519PrivateKey.generate()
            raw = self.key.public_key().public_bytes_raw()
            self.cose = cbor2.dumps({1: 1, 3: -8, -1: 6, -2: raw})
        else:
            raise ValueError("alg is -7 or -8")

    @property
    def id(self) -> str:
        return b64url(self.credential_id)

    def policy_entry(self) -> dict:
        """The ``passkeys`` entry of the policy for this credential."""
        return {"id": self.id, "public_key": b64url(self.cose), "alg": self.alg, "label": self.label}

    def _sign(self, data: bytes) -> bytes:
        if self.alg == -7:
            return self.key.sign(data, ec.ECDSA(hashes.SHA256()))
        return self.key.sign(data)

    def assert_(self, challenge: bytes, *, origin: str | None = None, rp_id: str | None = None,
                type_: str = "webauthn.get", flags: int = FLAG_UP | FLAG_UV,
                counter: int | None = None, credential_id: bytes | None = None,
                signer: SoftPasskey | None = None) -> WebAuthnAssertion:
        """An assertion over ``challenge`` (the keyword arguments bend one part each)."""
        if counter is None:
            self.counter += self.step
            counter = self.counter
        auth = (hashlib.sha256((rp_id or self.rp_id).encode()).digest() + bytes([flags])
                + struct.pack(">I", counter))
        client = json.dumps({"type": type_, "challenge": b64url(challenge),
                             "origin": origin or self.origin, "crossOrigin": False},
                            separators=(",", ":")).encode()
        sig = (signer or self)._sign(auth + hashlib.sha256(client).digest())
        return WebAuthnAssertion(credential_id or self.credential_id, auth, client, sig)

    def authenticator(self, **bend):
        """A callable for ApplianceClient.decide_with_passkey."""
        def get(*, challenge: bytes, credential_ids: list[str], rp_id: str) -> WebAuthnAssertion:
            assert self.id in credential_ids and rp_id == self.rp_id
            return self.assert_(challenge, **bend)
        return get
