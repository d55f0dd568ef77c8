"""Prime generation: Blum primes for Paillier, safe primes for ring-Pedersen.

Safe primes p = 2q + 1 are found by sieving a window of candidates for q and 2q + 1 together
against every prime below ``SIEVE_BOUND`` (one slice assignment per small prime), then a
Fermat test of p, then Miller-Rabin of q and p. Every prime returned has its top two bits set,
so a product of two ``bits``-bit primes has exactly ``2 * bits`` bits.

``PrimeSource`` is what the protocols take: fresh primes from an RNG, or a pool seeded
from configuration (the node's sealed prime pool, or a test-only prime file in tests).
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Protocol

import gmpy2
from gmpy2 import mpz

from appliance.errors import ParameterError
from appliance.tss.group import RNG, SystemRNG

SIEVE_BOUND = 1 << 16
WINDOW = 1 << 14
MR_ROUNDS = 40


def _small_primes(bound: int) -> list[int]:
    sieve = bytearray([1]) * bound
    sieve[0:2] = b"\x00\x00"
    for i in range(2, int(bound**0.5) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytes(len(range(i * i, bound, i)))
    return [i for i in range(3, bound) if sieve[i]]


SMALL_PRIMES = _small_primes(SIEVE_BOUND)


def _random_top_bits(bits: int, rng: RNG) -> int:
    x = int.from_bytes(rng.token_bytes((bits + 7) // 8), "big")
    x &= (1 << bits) - 1
    return x | (3 << (bits - 2))


def random_safe_prime(bits: int, rng: RNG | None = None) -> int:
    """A uniformly located safe prime of exactly ``bits`` bits (top two bits set)."""
    if bits < 64:
        raise ParameterError("safe primes below 64 bits are not supported")
    rng = rng or SystemRNG()
    while True:
        # q = base + 2k, p = 2q + 1; base odd with its top two bits set (as a (bits-1)-bit number)
        base = _random_top_bits(bits - 1, rng) | 1
        if (base + 2 * WINDOW).bit_length() != bits - 1:
            continue
        alive = bytearray([1]) * WINDOW
        for r in SMALL_PRIMES:
            inv2 = (r + 1) // 2  # 2^-1 mod r
            # q ≡ 0 (mod r)  <=>  k ≡ -base / 2
            k0 = (-base * inv2) % r
            alive[k0::r] = bytes(len(range(k0, WINDOW, r)))
            # 2q + 1 ≡ 0 (mod r)  <=>  k ≡ -(2 base + 1) / 4
            k1 = (-(2 * base + 1) * inv2 * inv2) % r
            alive[k1::r] = bytes(len(range(k1, WINDOW, r)))
        for k in (i for i, a in enumerate(alive) if a):
            q = mpz(base + 2 * k)
            p = 2 * q + 1
            if gmpy2.powmod(2, p - 1, p) != 1:
                continue
            if gmpy2.is_prime(q, MR_ROUNDS) and gmpy2.is_prime(p, MR_ROUNDS):
                return int(p)


def random_blum_prime(bits: int, rng: RNG | None = None) -> int:
    """A prime p ≡ 3 (mod 4) of exactly ``bits`` bits (top two bits set)."""
    if bits < 64:
        raise ParameterError("Blum primes below 64 bits are not supported")
    rng = rng or SystemRNG()
    while True:
        base = _random_top_bits(bits, rng) | 3
        alive = bytearray([1]) * WINDOW
        for r in SMALL_PRIMES:
            # base + 4k ≡ 0 (mod r)
            k0 = (-base * pow(4, -1, r)) % r
            alive[k0::r] = bytes(len(range(k0, WINDOW, r)))
        for k in (i for i, a in enumerate(alive) if a):
            p = mpz(base + 4 * k)
            if p.bit_length() != bits:
                break
            if gmpy2.powmod(2, p - 1, p) == 1 and gmpy2.is_prime(p, MR_ROUNDS):
                return int(p)


def is_blum_prime(p: int) -> bool:
    return p % 4 == 3 and bool(gmpy2.is_prime(p, MR_ROUNDS))


def is_safe_prime(p: int) -> bool:
    return p % 4 == 3 and bool(gmpy2.is_prime((p - 1) // 2, MR_ROUNDS)) and bool(
        gmpy2.is_prime(p, MR_ROUNDS)
    )


class PrimeSource(Protocol):
    """Where a party's primes come from."""

    def blum_prime(self, bits: int) -> int: ...

    def safe_prime(self, bits: int) -> int: ...


class FreshPrimes:
    """Generates every prime on demand from the given RNG."""

    def __init__(self, rng: RNG | None = None) -> None:
        self._rng = rng or SystemRNG()

    def blum_prime(self, bits: int) -> int:
        return random_blum_prime(bits, self._rng)

    def safe_prime(self, bits: int) -> int:
        return random_safe_prime(bits, self._rng)


class PrimePool:
    """A pool of pre-generated primes, each handed out at most once.

    Falls back to fresh generation when a kind runs out (unless ``fallback`` is None).
    Thread-safe. Safe primes are also Blum primes, so they may serve either request.
    """

    def __init__(
        self,
        safe: dict[int, list[int]] | None = None,
        blum: dict[int, list[int]] | None = None,
        fallback: PrimeSource | None = None,
    ) -> None:
        self._safe = {b: list(v) for b, v in (safe or {}).items()}
        self._blum = {b: list(v) for b, v in (blum or {}).items()}
        self._fallback = fallback
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, path: str | Path, fallback: PrimeSource | None = None,
                  shuffle_seed: bytes | None = None) -> "PrimePool":
        """Load ``{"safe": {"1024": [...]}, "blum": {...}}`` (hex strings); ``shuffle_seed``
        reorders each list deterministically."""
        data = json.loads(Path(path).read_text())

        def conv(d: dict) -> dict[int, list[int]]:
            out = {}
            for b, v in d.items():
                items = [int(x, 16) for x in v]
                if shuffle_seed is not None:
                    items.sort(key=lambda x: hashlib.sha256(shuffle_seed + x.to_bytes(512, "big")).digest())
                out[int(b)] = items
            return out

        return cls(conv(data.get("safe", {})), conv(data.get("blum", {})), fallback)

    def counts(self) -> dict[str, dict[int, int]]:
        with self._lock:
            return {
                "safe": {b: len(v) for b, v in self._safe.items()},
                "blum": {b: len(v) for b, v in self._blum.items()},
            }

    def _take(self, table: dict[int, list[int]], bits: int) -> int | None:
        with self._lock:
            items = table.get(bits)
            return items.pop() if items else None

    def safe_prime(self, bits: int) -> int:
        p = self._take(self._safe, bits)
        if p is not None:
            return p
        if self._fallback is None:
            raise ParameterError(f"prime pool has no {bits}-bit safe prime left")
        return self._fallback.safe_prime(bits)

    def blum_prime(self, bits: int) -> int:
        p = self._take(self._blum, bits)
        if p is None:
            p = self._take(self._safe, bits)
        if p is not None:
            return p
        if self._fallback is None:
            raise ParameterError(f"prime pool has no {bits}-bit Blum prime left")
        return self._fallback.blum_prime(bits)
