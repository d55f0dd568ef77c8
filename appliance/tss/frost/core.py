"""RFC 9591 §4 and §5: the FROST operations, sans-I/O, for any ciphersuite in ``suites.py``.

Notation as the RFC: identifiers are nonzero scalars; sk_i a signer's share, PK_i its public
(verification) share, PK the group public key; (d_i, e_i) hiding and binding nonces with
commitments (D_i, E_i); ρ_i binding factors; R the group commitment; c the challenge; λ_i
Lagrange coefficients; z_i signature shares.

- ``nonce_generate`` (§4.1): H3(random_bytes(32) || SerializeScalar(sk_i)).
- ``commit`` (§5.1): round one.
- ``encode_group_commitment_list`` (§4.3), ``compute_binding_factors`` (§4.4): ρ_i =
  H1(SerializeElement(PK) || H4(msg) || H5(encoded list) || SerializeScalar(id_i)): every
  signer's ρ binds the message and the whole commitment list (so ROS/Drijvers do not apply).
- ``compute_group_commitment`` (§4.5), ``compute_challenge`` (§4.6).
- ``sign`` (§5.2): z_i = d_i + e_i·ρ_i + λ_i·sk_i·c.
- ``verify_signature_share`` (§5.4): z_i·G == R_i + (c·λ_i)·PK_i, R_i = D_i + ρ_i·E_i.
- ``aggregate`` (§5.3): (R, Σ z_i); ``verify_signature`` (Appendix C / BIP340 / RFC 8032).

The commitment list must be sorted by identifier with no duplicates (``check_commitment_list``).
For the Taproot ciphersuite the even-Y rules of ``suites.py`` are applied here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from appliance.errors import EncodingError, ParameterError
from appliance.tss.frost.suites import Ciphersuite
from appliance.tss.group import RNG


@dataclass(frozen=True)
class Commitment:
    """One signer's round-one commitment (identifier, D_i, E_i)."""

    identifier: Any
    hiding: Any
    binding: Any


@dataclass(frozen=True)
class Nonces:
    """The secret nonce pair (d_i, e_i). Never serialized outside a seal."""

    hiding: Any
    binding: Any

    def __repr__(self) -> str:
        return "Nonces(<secret>)"


def _id_int(S: Ciphersuite, ident: Any) -> int:
    data = S.G.serialize_scalar(ident)
    return int.from_bytes(data, "little" if S.G.name == "ed25519" else "big")


def nonce_generate(S: Ciphersuite, secret: Any, rng: RNG | None = None, *,
                   random_bytes: bytes | None = None) -> Any:
    """§4.1 (``random_bytes`` only for the RFC's test vectors)."""
    if random_bytes is None:
        if rng is None:
            raise ParameterError("nonce_generate needs an RNG")
        random_bytes = rng.token_bytes(32)
    if len(random_bytes) != 32:
        raise ParameterError("nonce randomness must be 32 bytes")
    return S.H3(random_bytes + S.G.serialize_scalar(secret))


def commit(S: Ciphersuite, identifier: Any, sk_i: Any, rng: RNG) -> tuple[Nonces, Commitment]:
    """§5.1: fresh (d_i, e_i) and their commitments; a zero nonce is drawn again."""
    G = S.G
    while True:
        d, e = nonce_generate(S, sk_i, rng), nonce_generate(S, sk_i, rng)
        if not G.is_zero(d) and not G.is_zero(e):
            return Nonces(d, e), Commitment(identifier, G.base_mul(d), G.base_mul(e))


def check_commitment_list(S: Ciphersuite, commitments: Sequence[Commitment]) -> None:
    """Sorted by identifier, no duplicates, no zero identifier, no identity element."""
    ids = [_id_int(S, c.identifier) for c in commitments]
    if not ids:
        raise EncodingError("empty commitment list")
    if any(i == 0 for i in ids):
        raise EncodingError("zero identifier in the commitment list")
    if ids != sorted(set(ids)):
        raise EncodingError("commitment list not sorted by identifier or has duplicates")
    for c in commitments:
        if S.G.is_identity(c.hiding) or S.G.is_identity(c.binding):
            raise EncodingError("identity element in the commitment list")


def encode_group_commitment_list(S: Ciphersuite, commitments: Sequence[Commitment]) -> bytes:
    G = S.G
    return b"".join(G.serialize_scalar(c.identifier) + G.serialize_element(c.hiding)
                    + G.serialize_element(c.binding) for c in commitments)


def binding_factor_inputs(S: Ciphersuite, PK: Any, commitments: Sequence[Commitment],
                          msg: bytes) -> list[tuple[Any, bytes]]:
    prefix = (S.G.serialize_element(PK) + S.H4(msg)
              + S.H5(encode_group_commitment_list(S, commitments)))
    return [(c.identifier, prefix + S.G.serialize_scalar(c.identifier)) for c in commitments]


def compute_binding_factors(S: Ciphersuite, PK: Any, commitments: Sequence[Commitment],
                            msg: bytes) -> dict[int, Any]:
    """identifier (as an int) -> ρ_i."""
    return {_id_int(S, ident): S.H1(rho_input)
            for ident, rho_input in binding_factor_inputs(S, PK, commitments, msg)}


def compute_group_commitment(S: Ciphersuite, commitments: Sequence[Commitment],
                             rho: dict[int, Any]) -> Any:
    G = S.G
    R = G.psum(G.padd(c.hiding, G.mul_point(c.binding, rho[_id_int(S, c.identifier)]))
               for c in commitments)
    if G.is_identity(R):
        raise EncodingError("group commitment is the identity")
    return R


def derive_interpolating_value(S: Ciphersuite, participants: Iterable[Any], x_i: Any) -> Any:
    """§4.2: λ_i at 0 over the identifiers ``participants`` (x_i among them)."""
    G = S.G
    xs = list(participants)
    if sum(1 for x in xs if x == x_i) != 1:
        raise ParameterError("x_i must be exactly once among the participants")
    num, den = G.ONE, G.ONE
    for x_j in xs:
        if x_j == x_i:
            continue
        num = G.mul(num, x_j)
        den = G.mul(den, G.sub(x_j, x_i))
    return G.mul(num, G.inv(den))


def sign(S: Ciphersuite, identifier: Any, sk_i: Any, PK: Any, nonces: Nonces, msg: bytes,
         commitments: Sequence[Commitment]) -> Any:
    """§5.2: this signer's z_i over exactly ``commitments`` and ``msg``."""
    G = S.G
    check_commitment_list(S, commitments)
    sk_i, PK = S.even_key(sk_i, PK)
    rho = compute_binding_factors(S, PK, commitments, msg)
    R = compute_group_commitment(S, commitments, rho)
    lam = derive_interpolating_value(S, [c.identifier for c in commitments], identifier)
    c = S.challenge(R, PK, msg)
    d, e = nonces.hiding, nonces.binding
    if S.commitment_negated(R):
        d, e = G.neg(d), G.neg(e)
    return G.add(G.add(d, G.mul(e, rho[_id_int(S, identifier)])), G.mul(G.mul(lam, sk_i), c))


@dataclass(frozen=True)
class SigningContext:
    """What the coordinator derives once per (PK, msg, commitment list)."""

    PK: Any
    rho: dict[int, Any]
    R: Any
    c: Any
    identifiers: list[Any]


def signing_context(S: Ciphersuite, PK: Any, msg: bytes, commitments: Sequence[Commitment]) -> SigningContext:
    check_commitment_list(S, commitments)
    _, PK_even = S.even_share(PK, PK)
    rho = compute_binding_factors(S, PK_even, commitments, msg)
    R = compute_group_commitment(S, commitments, rho)
    return SigningContext(PK, rho, R, S.challenge(R, PK_even, msg), [c.identifier for c in commitments])


def verify_signature_share(S: Ciphersuite, ctx: SigningContext, commitment: Commitment,
                           PK_i: Any, z_i: Any) -> bool:
    """§5.4: z_i·G == R_i + (c·λ_i)·PK_i (R_i negated for Taproot when R is odd)."""
    G = S.G
    PK_i, _ = S.even_share(PK_i, ctx.PK)
    R_i = G.padd(commitment.hiding, G.mul_point(commitment.binding, ctx.rho[_id_int(S, commitment.identifier)]))
    if S.commitment_negated(ctx.R):
        R_i = G.pneg(R_i)
    lam = derive_interpolating_value(S, ctx.identifiers, commitment.identifier)
    return G.base_mul(z_i) == G.padd(R_i, G.mul_point(PK_i, G.mul(ctx.c, lam)))


def aggregate(S: Ciphersuite, ctx: SigningContext, shares: Sequence[Any]) -> bytes:
    """§5.3: the signature (R, Σ z_i), serialized."""
    G = S.G
    z = G.ZERO
    for z_i in shares:
        z = G.add(z, z_i)
    return S.serialize_signature(ctx.R, z)


def verify_signature(S: Ciphersuite, msg: bytes, sig: bytes, PK: Any) -> bool:
    """z·G == R + c·PK (prime-order groups, so the RFC's cofactor is 1 on checked inputs)."""
    G = S.G
    try:
        R, z = S.deserialize_signature(sig)
    except EncodingError:
        return False
    _, PK = S.even_share(PK, PK)
    return G.base_mul(z) == G.padd(R, G.mul_point(PK, S.challenge(R, PK, msg)))
