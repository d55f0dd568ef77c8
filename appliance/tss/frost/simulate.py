"""Run FROST in memory, every party in this process (as ``appliance.tss.simulate`` does for
CGGMP): messages still go through their byte encoding, signatures and every check.

    shares = keygen(3, 2, "schnorr-bip340")
    sig = sign(shares[:2], b"message", merkle_root=b"")   # BIP341 key-path output key
    fresh = refresh(shares)                               # every share changes, PK stays
    moved = reshare(shares[:2], [0, 1, 2, 3], 3)          # 3-of-4, same PK
    sig = sign(shares[:2], b"message", derivation=(chain_code, "m/0/7"), merkle_root=b"")
"""

from __future__ import annotations

import hashlib
from typing import Sequence

from appliance.errors import ParameterError
from appliance.tss.frost.bip32 import derive_key
from appliance.tss.frost.dkg import FrostDkgParty
from appliance.tss.frost.keyshare import FrostKeyShare
from appliance.tss.frost.refresh import FrostRefreshParty
from appliance.tss.frost.reshare import FrostOldKey, FrostReshareParty
from appliance.tss.frost.sign import FrostNonces, FrostSignParty
from appliance.tss.group import RNG, SeededRNG, SystemRNG
from appliance.tss.runner import Identities, Tamper, run


def _party_rng(rng: RNG, i: int) -> RNG:
    return SeededRNG(rng.token_bytes(32) + i.to_bytes(4, "big"))


def _sid(rng: RNG, label: bytes) -> bytes:
    return hashlib.sha256(label + rng.token_bytes(32)).digest()[:16]


def keygen(n: int, threshold: int, scheme: str = "schnorr-bip340", *, rng: RNG | None = None,
           tamper: Tamper | None = None, identities: Identities | None = None,
           parties: dict[int, FrostDkgParty] | None = None) -> list[FrostKeyShare]:
    """t-of-n FROST DKG; one FrostKeyShare per party (index 0..n-1)."""
    if not 1 <= threshold <= n or n < 2:
        raise ParameterError("need 2 <= n and 1 <= threshold <= n")
    rng = rng if rng is not None else SystemRNG()
    ids = identities or Identities(range(n), rng)
    sid = _sid(rng, b"frost-keygen")
    ps = {i: FrostDkgParty(sid, i, list(range(n)), threshold, scheme, ids.signers[i], ids.directory,
                           _party_rng(rng, i)) for i in range(n)}
    ps.update(parties or {})
    out = run(ps, tamper)
    return [out[i] for i in range(n)]  # type: ignore[misc]


def sign(shares: Sequence[FrostKeyShare], message: bytes, *, merkle_root: bytes | None = None,
         rng: RNG | None = None, tamper: Tamper | None = None,
         nonces: dict[int, FrostNonces] | None = None, identities: Identities | None = None,
         messages: dict[int, bytes] | None = None, derivation: tuple[bytes, str] | None = None) -> bytes:
    """Sign ``message`` with the first ``threshold`` of ``shares`` (the serialized signature:
    64 bytes for BIP340 and Ed25519). ``nonces`` (pooled, per party) and ``messages`` (what
    each party was asked to sign; default ``message``) are for tests. ``derivation`` =
    (chain code, non-hardened path) signs for that BIP32 child (``bip32.derive_key``), and
    ``merkle_root`` then for the child's Taproot output key."""
    if not shares:
        raise ParameterError("no shares given")
    t = shares[0].threshold
    if len(shares) < t:
        raise ParameterError(f"need at least {t} shares, got {len(shares)}")
    rng = rng if rng is not None else SystemRNG()
    chosen = sorted(shares, key=lambda s: s.index)[:t]
    if derivation is not None:
        chosen = [derive_key(s, *derivation) for s in chosen]
    signers = [s.index for s in chosen]
    ids = identities or Identities(signers, rng)
    sid = _sid(rng, b"frost-sign")
    messages = messages or {}
    parties = {s.index: FrostSignParty(sid, s, signers, messages.get(s.index, message), ids.signers[s.index],
                                       ids.directory, _party_rng(rng, s.index),
                                       nonces=(nonces or {}).get(s.index), merkle_root=merkle_root)
               for s in chosen}
    out = run(parties, tamper)
    sigs = set(out.values())
    if len(sigs) != 1:
        raise RuntimeError("parties produced different signatures")
    return sigs.pop()  # type: ignore[return-value]


def refresh(shares: Sequence[FrostKeyShare], *, rng: RNG | None = None, tamper: Tamper | None = None,
            identities: Identities | None = None) -> list[FrostKeyShare]:
    """Zero-sharing refresh by every participant of the key (one share each, any order)."""
    if not shares:
        raise ParameterError("no shares given")
    rng = rng if rng is not None else SystemRNG()
    by = {s.index: s for s in shares}
    if sorted(by) != shares[0].participants:
        raise ParameterError("a refresh needs every participant of the key")
    ids = identities or Identities(sorted(by), rng)
    sid = _sid(rng, b"frost-refresh")
    parties = {i: FrostRefreshParty(sid, s, ids.signers[i], ids.directory, _party_rng(rng, i))
               for i, s in by.items()}
    out = run(parties, tamper)
    return [out[i] for i in sorted(by)]  # type: ignore[misc]


def reshare(senders: Sequence[FrostKeyShare], new_members: list[int], new_threshold: int, *,
            rng: RNG | None = None, tamper: Tamper | None = None,
            identities: Identities | None = None) -> list[FrostKeyShare]:
    """Move the key of ``senders`` (at least t old shares) to ``new_members`` with threshold
    ``new_threshold``; the new shares, ordered by index (old-only senders get a confirmation)."""
    if not senders:
        raise ParameterError("no shares given")
    rng = rng if rng is not None else SystemRNG()
    old = FrostOldKey.of(senders[0])
    by = {s.index: s for s in senders}
    every = sorted(set(by) | set(new_members))
    ids = identities or Identities(every, rng)
    sid = _sid(rng, b"frost-reshare")
    parties = {i: FrostReshareParty(sid, i, old, sorted(by), new_members, new_threshold, ids.signers[i],
                                    ids.directory, _party_rng(rng, i), share=by.get(i)) for i in every}
    out = run(parties, tamper)
    return [out[j] for j in sorted(set(new_members))]  # type: ignore[misc]
