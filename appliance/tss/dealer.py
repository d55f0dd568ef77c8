"""Key import: split an existing private key into t-of-n Shamir shares (on the operator's
offline machine) and check an imported share on the receiving node.

The dealer publishes Feldman commitments C = (g^{a_0}, ..., g^{a_{t-1}}) with a_0 the private
key; each node checks g^{x_j} = C(y_j) for its share before sealing it, so a share that does not
fit the commitments is refused, naming the problem. Evaluation points come from the import id
as in keygen. The nodes then run aux-info; a refresh right after import is recommended, since
the dealer machine saw the whole key.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.errors import ApplianceError
from appliance.tss.group import Q, RNG, Point, poly_commit_eval, poly_eval, random_scalar
from appliance.tss.keygen import evaluation_points
from appliance.tss.keyshare import KeyShare


class ImportError_(ApplianceError, ValueError):
    code = "bad_import"


@dataclass(frozen=True)
class ImportBundle:
    """Public data of an import plus the per-party shares (secret: encrypt each to its node)."""

    import_id: bytes
    threshold: int
    commitments: list[Point]
    chain_code: bytes
    shares: dict[int, int]

    def __repr__(self) -> str:
        return f"ImportBundle(id={self.import_id.hex()}, threshold={self.threshold}, parties={sorted(self.shares)})"


def split_key(private_key: int, threshold: int, parties: list[int], rng: RNG, *,
              chain_code: bytes | None = None, import_id: bytes | None = None) -> ImportBundle:
    if not 0 < private_key < Q:
        raise ImportError_("the private key must be in [1, q-1]")
    if not 1 <= threshold <= len(parties):
        raise ImportError_("threshold must be between 1 and the number of parties")
    import_id = import_id or rng.token_bytes(16)
    coeffs = [private_key] + [random_scalar(rng) for _ in range(threshold - 1)]
    pts = evaluation_points(import_id, sorted(parties))
    return ImportBundle(import_id, threshold, [Point.generator_mul(a) for a in coeffs],
                        chain_code if chain_code is not None else rng.token_bytes(32),
                        {j: poly_eval(coeffs, pts[j]) for j in sorted(parties)})


def accept_share(import_id: bytes, me: int, parties: list[int], threshold: int,
                 commitments: list[Point], chain_code: bytes, share: int) -> KeyShare:
    """The receiving node's check of its imported share; returns a KeyShare without aux info."""
    if len(commitments) != threshold:
        raise ImportError_("the commitment vector must have exactly t entries")
    if len(chain_code) != 32:
        raise ImportError_("the chain code must be 32 bytes")
    if not 0 <= share < Q:
        raise ImportError_("the share is not a scalar")
    pts = evaluation_points(import_id, sorted(parties))
    if Point.generator_mul(share) != poly_commit_eval(commitments, pts[me]):
        raise ImportError_("the share does not match the dealer's commitments")
    publics = {j: poly_commit_eval(commitments, pts[j]) for j in sorted(parties)}
    return KeyShare(index=me, threshold=threshold, eval_points=pts, secret_share=share,
                    public_shares=publics, public_key_point=commitments[0], chain_code=chain_code,
                    rid=import_id.ljust(32, b"\x00")[:32], epoch=0)
