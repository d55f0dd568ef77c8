"""Key import for FROST keys: split an existing Schnorr secret into t-of-n Shamir shares with
Feldman commitments in the scheme's group (on the operator's offline machine), and check an
imported share on the receiving node.

The secret scalar d comes from the key as its chain defines it:

- ``schnorr-bip340``: the 32-byte BIP340 secret key, big-endian, 0 < d < n, kept as given (the
  even-Y handling is the signing protocol's: ``suites.Ciphersuite.even_key``); the group key is
  P = d·G, and the key the appliance shows (and signs for) is Q = output_key(P, b"") as for a
  FROST key made by the DKG (appliance/keys/frost_keys.py).
- ``ed25519``: the RFC 8032 32-byte seed: h = SHA-512(seed), s = clamp(h[0:32]) read
  little-endian and reduced mod L (libsodium's ``crypto_core_ed25519_scalar_reduce``); the
  public key A = s·B is RFC 8032's (the clamped value and its reduction give the same point,
  B has order L), so Ed25519 signatures of the imported key verify under the seed's key.

The dealer publishes C = (a_0·G, ..., a_{t-1}·G) with a_0 = d; party j's share is f(x_j) with
x_j its identifier, derived from the import id exactly as the DKG derives identifiers from its
session id (``dkg.identifiers``), so an imported key signs, refreshes and reshares like a DKG
key. Secret arithmetic goes through the group's ``ScalarOps`` (libsecp256k1 / libsodium).

The receiving node's checks (``accept_share``; each failure is an ``ImportError_`` naming it):
1. the commitment vector has exactly t valid elements (none the identity);
2. the share is a canonical scalar;
3. share·G == Σ_m x_me^m·C_m (the share fits the dealer's commitments).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from appliance.errors import EncodingError
from appliance.tss.dealer import ImportError_
from appliance.tss.frost.dkg import commitment_eval, identifiers, poly_eval
from appliance.tss.frost.keyshare import FrostKeyShare
from appliance.tss.frost.suites import Ciphersuite, suite_for
from appliance.tss.group import RNG

#: the FROST schemes a key can be imported as
IMPORT_SCHEMES = ("schnorr-bip340", "ed25519")


def _suite(scheme: str) -> Ciphersuite:
    if scheme not in IMPORT_SCHEMES:
        raise ImportError_(f"not a FROST import scheme: {scheme!r} (one of {', '.join(IMPORT_SCHEMES)})")
    return suite_for(scheme)


def secret_scalar(scheme: str, secret: bytes) -> bytes:
    """The secret scalar (the group's 32-byte encoding) of a 32-byte ``schnorr-bip340`` secret
    key or ``ed25519`` seed."""
    S = _suite(scheme)
    if not isinstance(secret, (bytes, bytearray)) or len(secret) != 32:
        raise ImportError_("the secret must be 32 bytes")
    G = S.G
    if scheme == "ed25519":
        h = bytearray(hashlib.sha512(bytes(secret)).digest()[:32])
        h[0] &= 248
        h[31] &= 127
        h[31] |= 64
        d = G.reduce_wide(bytes(h) + bytes(32))
        del h
        return d
    try:
        d = G.deserialize_scalar(bytes(secret))
    except EncodingError:
        raise ImportError_("the BIP340 secret key must be in [1, n-1]") from None
    if G.is_zero(d):
        raise ImportError_("the BIP340 secret key must be in [1, n-1]")
    return d


@dataclass(frozen=True)
class FrostSplit:
    """Public data of an import plus the per-party shares (secret: encrypt each to its node)."""

    scheme: str
    import_id: bytes
    threshold: int
    commitments: list[bytes]  # serialized elements; commitments[0] is the group key P
    shares: dict[int, bytes]  # serialized scalars

    def __repr__(self) -> str:
        return f"FrostSplit({self.scheme}, id={self.import_id.hex()}, threshold={self.threshold}, parties={sorted(self.shares)})"


def split_key(scheme: str, secret: bytes, threshold: int, parties: list[int], rng: RNG, *,
              import_id: bytes | None = None) -> FrostSplit:
    """Shamir-split the key ``secret`` (a BIP340 secret key or an Ed25519 seed, 32 bytes)."""
    S = _suite(scheme)
    G = S.G
    if not 1 <= threshold <= len(parties) or len(set(parties)) != len(parties):
        raise ImportError_("threshold must be between 1 and the number of parties")
    d = secret_scalar(scheme, secret)
    import_id = import_id or rng.token_bytes(16)
    ids = identifiers(S, import_id, sorted(parties))
    coeffs = [d] + [G.random_scalar(rng) for _ in range(threshold - 1)]
    C = [G.serialize_element(G.base_mul(a)) for a in coeffs]
    shares = {j: G.serialize_scalar(poly_eval(S, coeffs, ids[j])) for j in sorted(parties)}
    del coeffs
    return FrostSplit(scheme, import_id, threshold, C, shares)


def parse_commitments(scheme: str, commitments: list[bytes], threshold: int) -> list[Any]:
    """Check 1: exactly t valid elements of the scheme's group, none the identity."""
    S = _suite(scheme)
    if len(commitments) != threshold:
        raise ImportError_("the commitment vector must have exactly t entries")
    try:
        return [S.G.deserialize_element(bytes(c)) for c in commitments]
    except EncodingError as exc:
        raise ImportError_(f"a commitment is not a {scheme} group element: {exc}") from None


def accept_share(scheme: str, import_id: bytes, me: int, parties: list[int], threshold: int,
                 commitments: list[bytes], share: bytes) -> FrostKeyShare:
    """The receiving node's checks of its imported share; the FrostKeyShare (epoch 0)."""
    S = _suite(scheme)
    G = S.G
    C = parse_commitments(scheme, commitments, threshold)
    parties = sorted(parties)
    if me not in parties or not 1 <= threshold <= len(parties):
        raise ImportError_("this node is not one of the import's parties")
    try:
        sk = G.deserialize_scalar(bytes(share))
    except (EncodingError, TypeError) as exc:
        raise ImportError_(f"the share is not a scalar: {exc}") from None
    ids = identifiers(S, import_id, parties)
    if G.base_mul(sk) != commitment_eval(S, C, ids[me]):
        raise ImportError_("the share does not match the dealer's commitments")
    return FrostKeyShare(
        scheme=S.scheme, index=me, threshold=threshold,
        identifiers={j: G.serialize_scalar(x) for j, x in ids.items()},
        secret_share=G.serialize_scalar(sk),
        verification_shares={j: G.serialize_element(commitment_eval(S, C, ids[j])) for j in parties},
        group_public_key=G.serialize_element(C[0]),
    )
