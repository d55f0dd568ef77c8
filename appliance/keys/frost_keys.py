"""FROST keys (``schnorr-bip340``, ``ed25519``) as this node stores and shows them.

Stored: the key row's ``public_key`` is the DKG's group element P in the ciphersuite's
encoding (33-byte SEC1 for secp256k1, 32 bytes for Ed25519); ``paillier_bits`` 0 and no chain
code; the sealed share is a :class:`appliance.tss.frost.keyshare.FrostKeyShare` under the
same AAD as an ECDSA share (node, key, epoch, kind ``share``).

Shown (``public_key`` in every view): for ``ed25519`` the 32-byte key P; for
``schnorr-bip340`` the x-only BIP341 output key Q = P + H_TapTweak(x(P))·G of a key-path-only
output (``taproot.output_key(P, b"")``). Every signature of such a key is made for Q (signing
with ``merkle_root=b""``), so it verifies under the ``public_key`` shown and spends the P2TR
output of Q. P itself (``internal_key``) is never offered as an output key: a rushing DKG
participant could have hidden a script path in it (appliance/tss/frost/taproot.py).
"""

from __future__ import annotations

from bitcointx import segwit_addr

from appliance.policy import BIP340, ED25519
from appliance.tss.frost import taproot
from appliance.tss.group import Point

#: the bech32 human-readable part of a segwit address per Bitcoin network
_HRP = {"mainnet": "bc", "testnet": "tb", "signet": "tb", "regtest": "bcrt"}


def merkle_root(scheme: str) -> bytes | None:
    """The BIP341 tweak every signature of a key of ``scheme`` is made with (b"": key path
    only; None: no tweak)."""
    return b"" if scheme == BIP340 else None


def shown_public_key(scheme: str, group_element: bytes) -> bytes:
    """The 32-byte key clients see and signatures verify under."""
    if scheme == BIP340:
        return taproot.output_key(Point.from_bytes(group_element), b"").to_bytes()[1:]
    if scheme == ED25519:
        return bytes(group_element)
    raise ValueError(f"not a FROST scheme: {scheme}")


def p2tr_address(output_key: bytes, network: str) -> str:
    """bech32m address of the witness-v1 output whose key is ``output_key`` (x-only Q)."""
    addr = segwit_addr.encode(_HRP[network], 1, output_key)
    if addr is None:  # pragma: no cover - 32 bytes always encode
        raise ValueError("not an x-only key")
    return addr


def key_fields(scheme: str, group_element: bytes, network: str) -> dict:
    """What a key view shows of a FROST key (``public_key`` and, for BIP340, ``internal_key``,
    ``p2tr`` and its ``network``)."""
    pk = shown_public_key(scheme, group_element)
    out = {"public_key": pk.hex(), "scheme": scheme}
    if scheme == BIP340:
        out.update(internal_key=group_element[1:].hex(), p2tr=p2tr_address(pk, network), network=network)
    return out
