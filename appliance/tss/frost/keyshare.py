"""What a FROST party keeps after the DKG: its share sk_i and everyone's public data.

Everything is stored in the ciphersuite's own encodings (RFC 9591 SerializeScalar /
SerializeElement), so one class serves every scheme: ``identifiers[j]`` is party j's
identifier (a nonzero scalar, the Shamir evaluation point), ``verification_shares[j]`` is
PK_j = sk_j·G, ``group_public_key`` is PK. ``public_key`` is the key as the chain shows it
(x-only for BIP340, the 32-byte point for Ed25519).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from appliance.errors import EncodingError
from appliance.tss import wire
from appliance.tss.frost.suites import Ciphersuite, suite_for
from appliance.tss.transcript import Transcript


@dataclass(frozen=True)
class FrostKeyShare:
    scheme: str
    index: int
    threshold: int
    identifiers: dict[int, bytes]
    secret_share: bytes
    verification_shares: dict[int, bytes]
    group_public_key: bytes
    epoch: int = 0

    def __repr__(self) -> str:
        return (f"FrostKeyShare({self.scheme}, index={self.index}, {self.threshold}-of-"
                f"{len(self.identifiers)}, public_key={self.public_key.hex()})")

    @property
    def suite(self) -> Ciphersuite:
        return suite_for(self.scheme)

    @property
    def participants(self) -> list[int]:
        return sorted(self.identifiers)

    def identifier(self, j: int) -> Any:
        return self.suite.G.deserialize_scalar(self.identifiers[j])

    def sk(self) -> Any:
        return self.suite.G.deserialize_scalar(self.secret_share)

    def PK(self) -> Any:
        return self.suite.G.deserialize_element(self.group_public_key)

    def PK_i(self, j: int) -> Any:
        return self.suite.G.deserialize_element(self.verification_shares[j])

    @property
    def public_key(self) -> bytes:
        S = self.suite
        return S.serialize_public_key(S.G.deserialize_element(self.group_public_key))

    def public_fingerprint(self) -> bytes:
        """A hash of everything public about the key (what all signers must agree on)."""
        tr = Transcript(b"frost-key-public-state").append("scheme", self.scheme)
        tr.append("threshold", self.threshold).append("epoch", self.epoch)
        tr.append("PK", self.group_public_key)
        for j in self.participants:
            tr.append("party", j).append("id", self.identifiers[j]).append("PK_j", self.verification_shares[j])
        return tr.digest()

    # the bytes are secret: seal them, never log them
    def to_bytes(self) -> bytes:
        return wire.encode(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> "FrostKeyShare":
        share = wire.decode(data, cls)
        G = share.suite.G
        try:
            ok = (share.index in share.identifiers
                  and set(share.identifiers) == set(share.verification_shares)
                  and 1 <= share.threshold <= len(share.identifiers)
                  and G.base_mul(share.sk()) == share.PK_i(share.index))
        except EncodingError:
            ok = False
        if not ok:
            raise EncodingError("FROST key share does not match its public share")
        return share
