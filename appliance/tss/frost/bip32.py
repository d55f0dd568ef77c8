"""BIP32 non-hardened derivation for ``schnorr-bip340`` FROST keys (an additive tweak, as
``appliance/tss/bip32.py`` does for ECDSA keys); refused for ``ed25519``.

The public derivation path on an x-only key, defined:
1. the parent is the *full even-Y point* of the x-only key, P = lift_x(x(PK)) (serialized
   02 || x(PK)): if the DKG's PK has odd Y, P = -PK, and every share and verification share is
   negated with it (the same key as BIP340 signs for);
2. standard BIP32 CKDpub from the extended public key (chain code, 02 || x(PK)) down a
   non-hardened path gives the child C = P + t·G, t = Σ IL (``appliance.tss.bip32.derive``),
   with C's own parity kept (any BIP32 library given that xpub derives the same C);
3. BIP340 and BIP341 then apply to the child as to any key: a BIP340 signature for C is under
   x(C) (even-Y rule at signing), and a Taproot output of C is Q = lift_x(x(C)) + H_TapTweak(
   x(C) || merkle_root)·G (``sign(..., merkle_root=b"")``).

``derive_key(share, chain_code, path)`` returns the share for C: sk_i' = ±sk_i + t,
PK_j' = ±PK_j + t·G, PK' = C. Since the Lagrange coefficients of any signer set sum to 1,
Σ λ_i·sk_i' = ±sk + t, the secret of C, and a bad signature share is still named against
PK_j'. A derived share is for one signing session: it is never sealed or stored. The chain
code is the key's (32 bytes, kept with its public data by the caller; a public value, but it
links every child to the parent, so it is shown only where the xpub is).

Ed25519 has no standard non-hardened derivation (SLIP-0010 defines hardened-only derivation
for ed25519, and the schemes with public derivation, such as BIP32-Ed25519, work on clamped
"extended" keys that a FROST share is not), so it is refused with ``ParameterError``; derive
another account by creating another key. Hardened steps need the whole private key and are
refused for every scheme (``DerivationError``, as for ECDSA keys).
"""

from __future__ import annotations

from dataclasses import replace

from appliance.errors import ParameterError
from appliance.tss.bip32 import Derived, derive
from appliance.tss.frost.keyshare import FrostKeyShare
from appliance.tss.frost.taproot import lift_x
from appliance.tss.group import Point

ED25519_REFUSAL = ("ed25519 keys have no standard non-hardened derivation (SLIP-0010 is "
                   "hardened-only); create another key instead")


def _check_scheme(scheme: str) -> None:
    if scheme == "ed25519":
        raise ParameterError(ED25519_REFUSAL)
    if scheme != "schnorr-bip340":
        raise ParameterError(f"BIP32 derivation is defined for schnorr-bip340 keys, not {scheme}")


def _check_chain_code(chain_code: bytes) -> None:
    if not isinstance(chain_code, (bytes, bytearray)) or len(chain_code) != 32:
        raise ParameterError("a chain code is 32 bytes")


def derive_public(scheme: str, x_only: bytes, chain_code: bytes, path: str | None) -> Derived:
    """The child of the x-only key ``x_only`` at ``path`` (steps 1-2 above): its full point
    (``.public_key``), chain code, the tweak t and the BIP32 metadata (``.xpub()``)."""
    _check_scheme(scheme)
    _check_chain_code(chain_code)
    return derive(lift_x(bytes(x_only)), bytes(chain_code), path)


def derive_key(share: FrostKeyShare, chain_code: bytes, path: str | None) -> FrostKeyShare:
    """The share for the child at ``path`` (sign with it as with the share itself)."""
    _check_scheme(share.scheme)
    _check_chain_code(chain_code)
    G = share.suite.G
    PK = share.PK()
    sk = share.sk()
    PKs = {j: share.PK_i(j) for j in share.participants}
    if PK.y_is_odd:
        sk, PK = G.neg(sk), -PK
        PKs = {j: -X for j, X in PKs.items()}
    child = derive(PK, bytes(chain_code), path)
    tG = Point.generator_mul(child.tweak) if child.tweak else Point.INFINITY
    return replace(
        share, secret_share=G.add(sk, G.scalar(child.tweak)),
        verification_shares={j: G.serialize_element(X + tG) for j, X in PKs.items()},
        group_public_key=G.serialize_element(child.public_key),
    )
