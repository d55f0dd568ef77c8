"""Security parameters of the 2024 revision (Appendix C.1), as functions of the modulus size.

With Paillier primes of ``b`` bits (N of 2b bits): ℓ = 256 (= κ, the scalar size), ε = b − 2ℓ,
ℓ' = b + ℓ, and m = 128 repetitions for Π^mod and Π^prm. These satisfy the paper's
inequalities: ε ≥ 2κ, ℓ' ≥ 3ℓ + ε, log N ≥ ℓ' + ε + 21 (the Π^dec range bump, up to 2^20
parties) and 2ℓ + ε = b (Π^fac).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from appliance.errors import ParameterError
from appliance.tss.paillier import ALLOWED_PAILLIER_BITS, DEFAULT_PAILLIER_BITS

KAPPA = 256
M_REPETITIONS = 128
MAX_PARTIES_LOG2 = 20


@dataclass(frozen=True)
class SecurityParams:
    paillier_bits: int
    ell: int
    ell_prime: int
    eps: int
    m: int = M_REPETITIONS

    @property
    def prime_bits(self) -> int:
        return self.paillier_bits // 2


@lru_cache(maxsize=None)
def security_params(paillier_bits: int = DEFAULT_PAILLIER_BITS) -> SecurityParams:
    if paillier_bits not in ALLOWED_PAILLIER_BITS:
        raise ParameterError(f"Paillier modulus must be one of {ALLOWED_PAILLIER_BITS} bits")
    b = paillier_bits // 2
    p = SecurityParams(paillier_bits, KAPPA, b + KAPPA, b - 2 * KAPPA)
    assert p.eps >= 2 * KAPPA and p.ell_prime >= 3 * p.ell + p.eps  # noqa: S101 (static)
    assert paillier_bits >= p.ell_prime + p.eps + 1 + MAX_PARTIES_LOG2  # noqa: S101
    return p
