"""RFC 9591 Appendix E vectors (both ciphersuites) and frost-secp256k1-tr's vectors, byte for
byte: nonces from their randomness, commitments, binding-factor inputs and factors, signature
shares, the signature (sources in tests/data/frost/README.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.tss.frost import core
from appliance.tss.frost.suites import FROST_ED25519, FROST_SECP256K1, FROST_SECP256K1_TR

DATA = Path(__file__).resolve().parents[1] / "data" / "frost"

CASES = [
    ("rfc9591-frost-ed25519-sha512.json", FROST_ED25519),
    ("rfc9591-frost-secp256k1-sha256.json", FROST_SECP256K1),
    ("zf-frost-secp256k1-tr-vectors.json", FROST_SECP256K1_TR),
]


def _ident(S, n: int):
    return S.G.scalar(n)


@pytest.mark.parametrize("name,S", CASES, ids=[c[0] for c in CASES])
def test_vectors_byte_for_byte(name, S):
    v = json.loads((DATA / name).read_text())
    G = S.G
    inp = v["inputs"]
    msg = bytes.fromhex(inp["message"])
    sk = G.deserialize_scalar(bytes.fromhex(inp["group_secret_key"]))
    pk_hex = inp.get("group_public_key") or inp["verifying_key_key"]
    PK = G.deserialize_element(bytes.fromhex(pk_hex))
    assert G.serialize_element(G.base_mul(sk)) == bytes.fromhex(pk_hex)
    # the dealer's polynomial f(x) = sk + a_1 x gives every participant share
    coeffs = [sk] + [G.deserialize_scalar(bytes.fromhex(a)) for a in inp["share_polynomial_coefficients"]]
    shares = {}
    for entry in inp["participant_shares"]:
        x = _ident(S, entry["identifier"])
        acc, power = G.ZERO, G.ONE
        for a in coeffs:
            acc = G.add(acc, G.mul(a, power))
            power = G.mul(power, x)
        assert G.serialize_scalar(acc).hex() == entry["participant_share"]
        shares[entry["identifier"]] = acc

    nonces, commitments = {}, []
    for out in v["round_one_outputs"]["outputs"]:
        i = out["identifier"]
        d = core.nonce_generate(S, shares[i], random_bytes=bytes.fromhex(out["hiding_nonce_randomness"]))
        e = core.nonce_generate(S, shares[i], random_bytes=bytes.fromhex(out["binding_nonce_randomness"]))
        assert G.serialize_scalar(d).hex() == out["hiding_nonce"]
        assert G.serialize_scalar(e).hex() == out["binding_nonce"]
        c = core.Commitment(_ident(S, i), G.base_mul(d), G.base_mul(e))
        assert G.serialize_element(c.hiding).hex() == out["hiding_nonce_commitment"]
        assert G.serialize_element(c.binding).hex() == out["binding_nonce_commitment"]
        nonces[i] = core.Nonces(d, e)
        commitments.append(c)
    assert [o["identifier"] for o in v["round_one_outputs"]["outputs"]] == inp["participant_list"]

    _, PK_even = S.even_share(PK, PK)
    inputs = dict(core.binding_factor_inputs(S, PK_even, commitments, msg))
    rho = core.compute_binding_factors(S, PK_even, commitments, msg)
    for out, c in zip(v["round_one_outputs"]["outputs"], commitments):
        assert inputs[c.identifier].hex() == out["binding_factor_input"]
        assert G.serialize_scalar(rho[out["identifier"]] if G.name != "ed25519"
                                  else rho[out["identifier"]]).hex() == out["binding_factor"]

    ctx = core.signing_context(S, PK, msg, commitments)
    z = []
    for out in v["round_two_outputs"]["outputs"]:
        i = out["identifier"]
        z_i = core.sign(S, _ident(S, i), shares[i], PK, nonces[i], msg, commitments)
        assert G.serialize_scalar(z_i).hex() == out["sig_share"]
        PK_i = G.base_mul(shares[i])
        assert core.verify_signature_share(S, ctx, commitments[inp["participant_list"].index(i)], PK_i, z_i)
        z.append(z_i)
    sig = core.aggregate(S, ctx, z)
    assert sig.hex() == v["final_output"]["sig"]
    assert core.verify_signature(S, msg, sig, PK)
    assert not core.verify_signature(S, msg + b"!", sig, PK)
