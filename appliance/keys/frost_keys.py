"""FROST keys (``schnorr-bip340``, ``ed25519``) as this node stores and shows them.

Stored: the key row's ``public_key`` is the DKG's group element P in the ciphersuite's
encoding (33-byte SEC1 for secp256k1, 32 bytes for Ed25519); ``paillier_bits`` 0; a
``schnorr-bip340`` key's ``chain_code`` (:func:`chain_code`: a hash of the DKG's public result,
which every party checked is the same before the key was committed; ed25519 keys have none,
since they have no derivation); the sealed share is a :class:`appliance.tss.frost.keyshare.FrostKeyShare` under the
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

import hashlib

from appliance.policy import BIP340, ED25519
from appliance.tss import wire
from appliance.tss.frost import taproot
from appliance.tss.frost.bip32 import derive_public
from appliance.tss.frost.keyshare import FrostKeyShare
from appliance.tss.frost.reshare import FrostOldKey
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


def chain_code(share: FrostKeyShare) -> bytes:
    """The BIP32 chain code of a ``schnorr-bip340`` key made by the FROST DKG (b"" for ed25519).

    As an ECDSA DKG key's chain code comes out of its DKG (the XOR of every party's committed
    contribution), this one comes out of the FROST DKG's transcript: a tagged hash of the
    result's public fingerprint (scheme, threshold, every party's identifier, which hashes the
    session id, every verification share and P), the state every party reported to the
    coordinator and that was checked equal before the key was committed, so every node stores
    the same chain code without another round. Like any chain code it is public data of the
    key (shown with the xpub); it is fixed at epoch 0 and kept through refresh and reshare."""
    if share.scheme != BIP340:
        return b""
    return taproot.tagged_hash(b"appliance/frost-chain-code", share.public_fingerprint())


def public_state(share: FrostKeyShare, chain: bytes) -> str:
    """The hash a holder reports of the key's public state (``GET /v1/peer/keys/{id}``), which a
    newcomer to a reshare compares with the job's ``old_info`` and ``chain_code``."""
    return hashlib.sha256(wire.encode(FrostOldKey.of(share)) + bytes(chain)).hexdigest()


def child(scheme: str, group_element: bytes, chain: bytes, path: str):
    """The BIP32 child of a ``schnorr-bip340`` key at ``path`` (``bip32.derive_public``: the
    child C of the internal key P), and the x-only key its signatures verify under: the
    child's key-path-only Taproot output key Q_C = output_key(C, b"") (what a sign request
    with this ``derivation_path`` signs for, as ``public_key`` is Q of P itself)."""
    d = derive_public(scheme, group_element[1:], chain, path)
    return d, taproot.output_key(d.public_key, b"").to_bytes()[1:]


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
