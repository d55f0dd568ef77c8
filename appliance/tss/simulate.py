"""Run the protocols in memory, every party in this process (the `simulate` contract).

    shares = keygen(3, 2, paillier_bits=2048)
    sig = sign(shares[:2], hashlib.sha256(b"hello").digest())

Messages still go through their byte encoding, signatures and every check; only the network
is missing. Identity keys are generated per call (software keys): in-process parties trust each
other's keys through the directory built here.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

from appliance.errors import ParameterError
from appliance.tss.aux import AuxParty, generate_aux_keys
from appliance.tss.dealer import accept_share, split_key
from appliance.tss.ecdsa import Signature
from appliance.tss.group import RNG, SystemRNG, SeededRNG
from appliance.tss.keygen import KeygenParty
from appliance.tss.keyshare import KeyShare, PooledAux
from appliance.tss.paillier import DEFAULT_PAILLIER_BITS
from appliance.tss.presign import Presignature, PresignatureSpent, PresignParty
from appliance.tss.reshare import OldKeyInfo, ReshareParty
from appliance.tss.primes import FreshPrimes, PrimeSource
from appliance.tss.protocol import SEQUENTIAL, CheckExecutor
from appliance.tss.runner import Identities, Tamper, run
from appliance.tss.sign import SignParty


def _rng(rng: RNG | None) -> RNG:
    return rng if rng is not None else SystemRNG()


def _party_rng(rng: RNG, i: int) -> RNG:
    """An independent stream per party (deterministic if ``rng`` is)."""
    return SeededRNG(rng.token_bytes(32) + i.to_bytes(4, "big"))


def _sid(rng: RNG, label: bytes) -> bytes:
    return hashlib.sha256(label + rng.token_bytes(32)).digest()[:16]


def keygen(n: int, threshold: int, *, paillier_bits: int = DEFAULT_PAILLIER_BITS,
           rng: RNG | None = None, primes: PrimeSource | None = None,
           tamper: Tamper | None = None, identities: Identities | None = None) -> list[KeyShare]:
    """t-of-n DKG followed by aux-info; returns one KeyShare per party (index 0..n-1)."""
    if not 1 <= threshold <= n or n < 2:
        raise ParameterError("need 2 <= n and 1 <= threshold <= n")
    rng = _rng(rng)
    primes = primes or FreshPrimes(rng)
    ids = identities or Identities(range(n), rng)
    sid = _sid(rng, b"keygen")
    parties = {i: KeygenParty(sid, i, list(range(n)), threshold, ids.signers[i], ids.directory,
                              _party_rng(rng, i)) for i in range(n)}
    shares = run(parties, tamper)
    return aux_info([shares[i] for i in range(n)], paillier_bits=paillier_bits, rng=rng, primes=primes,
                    tamper=tamper, identities=ids)


def aux_info(shares: Sequence[KeyShare], *, paillier_bits: int = DEFAULT_PAILLIER_BITS,
             rng: RNG | None = None, primes: PrimeSource | None = None, refresh: bool = False,
             tamper: Tamper | None = None, identities: Identities | None = None) -> list[KeyShare]:
    """Aux-info (fresh Paillier and ring-Pedersen keys for everyone); with ``refresh`` also
    re-shares zero so every share changes and the public key stays."""
    rng = _rng(rng)
    primes = primes or FreshPrimes(rng)
    idx = [s.index for s in shares]
    ids = identities or Identities(idx, rng)
    sid = _sid(rng, b"aux")
    parties = {
        s.index: AuxParty(sid, s, generate_aux_keys(paillier_bits, primes, rng), ids.signers[s.index],
                          ids.directory, _party_rng(rng, s.index), refresh=refresh)
        for s in shares
    }
    out = run(parties, tamper)
    return [out[i] for i in idx]


def pooled_aux_info(parties: Sequence[int], *, paillier_bits: int = DEFAULT_PAILLIER_BITS,
                    rng: RNG | None = None, primes: PrimeSource | None = None,
                    identities: Identities | None = None, tamper: Tamper | None = None) -> dict[int, PooledAux]:
    """Aux-info for the committee ``parties`` before any key (the key-independent session)."""
    rng = _rng(rng)
    primes = primes or FreshPrimes(rng)
    ids = identities or Identities(parties, rng)
    sid = _sid(rng, b"pooled-aux")
    out = run({i: AuxParty.pooled(sid, i, list(parties), generate_aux_keys(paillier_bits, primes, rng),
                                  ids.signers[i], ids.directory, _party_rng(rng, i)) for i in parties}, tamper)
    return dict(out)


def keygen_with_aux(pooled: dict[int, PooledAux], threshold: int, *, rng: RNG | None = None,
                    identities: Identities | None = None, tamper: Tamper | None = None) -> list[KeyShare]:
    """A DKG of the committee of ``pooled``, each share bound to its party's pooled aux-info
    (whose fingerprint is in the DKG's setup hash: the parties agree on it at the round-1 echo)."""
    rng = _rng(rng)
    idx = sorted(pooled)
    ids = identities or Identities(idx, rng)
    sid = _sid(rng, b"keygen")
    shares = run({i: KeygenParty(sid, i, idx, threshold, ids.signers[i], ids.directory, _party_rng(rng, i),
                                 aux_fingerprint=pooled[i].fingerprint()) for i in idx}, tamper)
    return [pooled[i].bind(shares[i]) for i in idx]


def refresh(shares: Sequence[KeyShare], *, rng: RNG | None = None,
            primes: PrimeSource | None = None) -> list[KeyShare]:
    bits = shares[0].paillier_bits or DEFAULT_PAILLIER_BITS
    return aux_info(shares, paillier_bits=bits, rng=rng, primes=primes, refresh=True)


def presign(shares: Sequence[KeyShare], *, rng: RNG | None = None,
            tamper: Tamper | None = None, identities: Identities | None = None,
            checks: CheckExecutor = SEQUENTIAL) -> list[Presignature]:
    """A presignature for exactly the signer set of ``shares`` (threshold many); ``checks``
    runs each party's checks of the others' proofs (a thread pool checks them in parallel)."""
    rng = _rng(rng)
    signers = sorted(s.index for s in shares)
    ids = identities or Identities(signers, rng)
    sid = _sid(rng, b"presign")
    parties = {s.index: PresignParty(sid, s, signers, ids.signers[s.index], ids.directory,
                                     _party_rng(rng, s.index), checks=checks) for s in shares}
    out = run(parties, tamper)
    return [out[s.index] for s in shares]


def sign_with_presignature(shares: Sequence[KeyShare], presigs: Sequence[Presignature],
                           digest: bytes, *, tweak: int = 0, rng: RNG | None = None,
                           tamper: Tamper | None = None, spent: set[bytes] | None = None,
                           identities: Identities | None = None) -> Signature:
    rng = _rng(rng)
    by_index = {p.index: p for p in presigs}
    ids = identities or Identities(sorted(by_index), rng)
    sid = _sid(rng, b"sign")
    # each SignParty consumes its Presignature object; ``spent`` also refuses ids used before
    # (as a node's store does for presignatures decoded again from their sealed bytes)
    if spent is not None and any(p.presig_id in spent for p in presigs):
        raise PresignatureSpent("this presignature was already used")
    parties = {}
    for s in shares:
        parties[s.index] = SignParty(sid, s, by_index[s.index], digest, ids.signers[s.index], ids.directory,
                                     _party_rng(rng, s.index), tweak=tweak)
    if spent is not None:
        spent.update(p.presig_id for p in presigs)
    out = run(parties, tamper)
    sigs = set(out.values())
    if len(sigs) != 1:
        raise RuntimeError("parties produced different signatures")
    return sigs.pop()


def sign(shares: Sequence[KeyShare], digest: bytes, *, tweak: int = 0,
         rng: RNG | None = None) -> Signature:
    """Presign and sign with the given shares (any `threshold` of them; extra ones are ignored)."""
    if len(digest) != 32:
        raise ParameterError("digest must be exactly 32 bytes")
    if not shares:
        raise ParameterError("no shares given")
    t = shares[0].threshold
    if len(shares) < t:
        raise ParameterError(f"need at least {t} shares, got {len(shares)}")
    chosen = sorted(shares, key=lambda s: s.index)[:t]
    presigs = presign(chosen, rng=rng)
    return sign_with_presignature(chosen, presigs, digest, tweak=tweak, rng=rng)


def reshare(shares: Sequence[KeyShare], new_members: Sequence[int], new_threshold: int, *,
            paillier_bits: int | None = None, rng: RNG | None = None,
            primes: PrimeSource | None = None, tamper: Tamper | None = None) -> list[KeyShare]:
    """Reshare to ``new_members`` with ``new_threshold`` (the old ``shares`` are the senders),
    then run aux-info on the new committee. Returns the new members' shares."""
    rng = _rng(rng)
    old = OldKeyInfo.of(shares[0])
    senders = sorted(s.index for s in shares)
    everyone = sorted(set(senders) | set(new_members))
    ids = Identities(everyone, rng)
    sid = _sid(rng, b"reshare")
    by_index = {s.index: s for s in shares}
    parties = {i: ReshareParty(sid, i, old, senders, list(new_members), new_threshold, ids.signers[i],
                               ids.directory, _party_rng(rng, i), share=by_index.get(i))
               for i in everyone}
    out = run(parties, tamper)
    new = [out[j] for j in sorted(new_members)]
    bits = paillier_bits or shares[0].paillier_bits or DEFAULT_PAILLIER_BITS
    return aux_info(new, paillier_bits=bits, rng=rng, primes=primes)


def import_key(private_key: int, n: int, threshold: int, *, paillier_bits: int = DEFAULT_PAILLIER_BITS,
               rng: RNG | None = None, primes: PrimeSource | None = None) -> list[KeyShare]:
    """Split ``private_key`` as a dealer would, check every share as its node would, then run
    aux-info (and a refresh is recommended next)."""
    rng = _rng(rng)
    parties = list(range(n))
    bundle = split_key(private_key, threshold, parties, rng)
    shares = [accept_share(bundle.import_id, j, parties, threshold, bundle.commitments, bundle.chain_code,
                           bundle.shares[j]) for j in parties]
    return aux_info(shares, paillier_bits=paillier_bits, rng=rng, primes=primes)
