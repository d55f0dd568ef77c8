"""Secret payloads encrypted to a node's HSM-held transport key."""

from __future__ import annotations

import os

import pytest

from hsm import HSMIntegrityError, encrypt_to

pytest.register_assert_rewrite("tests.hsm_fixtures")
from tests.hsm_fixtures import requires_softhsm  # noqa: E402

# fixtures: softhsm_token, open_hsms, hsm, two_tokens
pytest_plugins = ["tests.hsm_fixtures"]

pytestmark = [pytest.mark.hsm, requires_softhsm]


def test_payload_decrypts_only_inside_the_recipients_hsm(two_tokens, open_hsms):
    tok_a, tok_b = two_tokens
    a = open_hsms(tok_a.hsm_config(), node_id="node-a")
    b = open_hsms(tok_b.hsm_config(), node_id="node-b")
    assert a.transport_public_key != b.transport_public_key
    assert len(a.transport_public_key) == 65 and a.transport_public_key[0] == 4

    share = os.urandom(32)
    ctx = b"keygen/session-7/from-node-b/to-node-a/round-2"
    env = encrypt_to(a.transport_public_key, share, context=ctx)  # software sender
    assert share not in env
    assert a.transport_decrypt(env, context=ctx) == share

    with pytest.raises(HSMIntegrityError):  # another token cannot
        b.transport_decrypt(env, context=ctx)
    with pytest.raises(HSMIntegrityError):  # other context
        a.transport_decrypt(env, context=b"keygen/session-8/from-node-b/to-node-a/round-2")
    for pos in (0, 1, 40, 66, 70, len(env) - 17, len(env) - 1):
        bad = bytearray(env)
        bad[pos] ^= 0x01
        with pytest.raises(HSMIntegrityError):
            a.transport_decrypt(bytes(bad), context=ctx)
    with pytest.raises(HSMIntegrityError):
        a.transport_decrypt(env[:60], context=ctx)
    # an ephemeral "point" that is not on the curve never reaches the HSM
    off_curve = env[:1] + b"\x04" + b"\x01" * 64 + env[66:]
    with pytest.raises(HSMIntegrityError):
        a.transport_decrypt(off_curve, context=ctx)
    assert a.transport_decrypt(env, context=ctx) == share  # still fine


@pytest.mark.asyncio
async def test_transport_async_and_no_derived_secret_left_on_the_token(two_tokens, open_hsms):
    from pkcs11 import Attribute as A

    tok_a, _ = two_tokens
    a = open_hsms(tok_a.hsm_config(), node_id="node-a")
    payloads = [os.urandom(100 + i) for i in range(10)]
    envs = [encrypt_to(a.transport_public_key, p) for p in payloads]
    import asyncio

    out = await asyncio.gather(*(a.transport_decrypt_async(e) for e in envs))
    assert out == payloads
    # the ECDH output was a session object, destroyed right after HKDF input was read
    leftovers = a._worker.call(lambda: list(a._session.get_objects({A.TOKEN: False})))
    assert leftovers == []


def test_encrypt_to_rejects_a_bad_recipient_key():
    with pytest.raises(ValueError):
        encrypt_to(b"\x04" + b"\x00" * 64, b"x")
    with pytest.raises(ValueError):
        encrypt_to(b"\x02" + b"\x00" * 32, b"x")
