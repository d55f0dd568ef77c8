"""Mechanism probing against the real SoftHSM2 module with mechanisms hidden by its own
configuration (softhsm2.conf ``slots.mechanisms``): the AES-CBC-PAD + HMAC-SHA256 sealing
when CKM_AES_GCM is missing, blobs of both kinds side by side, tampering with the new kind,
and the refusal, by name, of a token with no authenticated sealing mechanism."""

from __future__ import annotations

import os

import pytest
from pkcs11 import Attribute as A

from appliance.sealed import (
    BLOB_VERSION,
    BLOB_VERSION_CBC_HMAC,
    MAC_LEN,
    MalformedBlob,
    SealContext,
    build_blob,
    parse_blob,
)
from hsm import HSM, HSMIntegrityError, HSMKeyNotFoundError, HSMMechanismError
from hsm.sealing import CBC_HMAC, GCM
from hsm.softhsm import init_token

pytest.register_assert_rewrite("tests.hsm_fixtures")
from tests.hsm_fixtures import (  # noqa: E402
    NO_GCM,
    NO_SEALING,
    NODE_ID,
    hide_mechanisms,
    object_files,
    requires_softhsm,
)

pytest_plugins = ["tests.hsm_fixtures"]
pytestmark = [pytest.mark.hsm, requires_softhsm]

SHARE = SealContext("share", "key-1", 3)
BAD = ("sealed share failed authentication (tampered, or not sealed for this node, key, epoch "
       "or context)")


@pytest.fixture
def token(tmp_path):
    return init_token(tmp_path / "hsm", "mech-token")


def test_without_gcm_the_node_seals_with_cbc_and_an_hsm_mac(token, open_hsms):
    hide_mechanisms(token.conf, NO_GCM)
    h = open_hsms(token.hsm_config())
    assert h.sealing_mechanism == CBC_HMAC
    blob = h.seal(SHARE, b"secret share")
    header, body = parse_blob(blob)
    assert blob[0] == BLOB_VERSION_CBC_HMAC and len(header.nonce) == 16
    assert (len(body) - MAC_LEN) % 16 == 0 and b"secret share" not in blob
    assert h.unseal(SHARE, blob) == b"secret share"
    attrs = h.key_attributes("mac", [A.SENSITIVE, A.EXTRACTABLE, A.TOKEN, A.SIGN, A.VERIFY,
                                     A.ENCRYPT, A.DECRYPT, A.DERIVE, A.WRAP, A.VALUE_LEN])
    assert attrs == {A.SENSITIVE: True, A.EXTRACTABLE: False, A.TOKEN: True, A.SIGN: True,
                     A.VERIFY: True, A.ENCRYPT: False, A.DECRYPT: False, A.DERIVE: False,
                     A.WRAP: False, A.VALUE_LEN: 32}
    # presignatures: own AES key, node MAC key; spent means its key is gone
    ctx = SealContext.presignature("key-1", 3, os.urandom(32), b"\x02" + b"\x11" * 32, (1, 2))
    pblob = h.seal_presignature(ctx, b"presig")
    assert pblob[0] == BLOB_VERSION_CBC_HMAC
    assert h.consume_presignature(ctx, pblob) == b"presig"
    assert h.list_presignature_keys() == []


def test_with_gcm_no_mac_key_is_made(token, open_hsms):
    h = open_hsms(token.hsm_config())
    assert h.sealing_mechanism == GCM and h.seal(SHARE, b"x")[0] == BLOB_VERSION
    with pytest.raises(HSMKeyNotFoundError) as e:
        h.key_attributes("mac", [A.SIGN])
    assert str(e.value) == "token 'mech-token' has no mac key"


def test_both_blob_kinds_open_where_the_token_offers_their_mechanisms(token, tmp_path):
    no_gcm = hide_mechanisms(token.conf, NO_GCM, tmp_path / "hsm" / "no-gcm.conf")
    with HSM.open(token.hsm_config(softhsm_conf=no_gcm), node_id=NODE_ID) as h:
        v2 = h.seal(SHARE, b"two")
    with HSM.open(token.hsm_config(), node_id=NODE_ID) as h:  # GCM offered again
        assert h.sealing_mechanism == GCM
        v1 = h.seal(SHARE, b"one")
        assert (v1[0], v2[0]) == (BLOB_VERSION, BLOB_VERSION_CBC_HMAC)
        assert h.unseal(SHARE, v1) == b"one" and h.unseal(SHARE, v2) == b"two"
    with HSM.open(token.hsm_config(softhsm_conf=no_gcm), node_id=NODE_ID) as h:
        assert h.unseal(SHARE, v2) == b"two"
        with pytest.raises(HSMIntegrityError) as e:
            h.unseal(SHARE, v1)
        assert str(e.value) == "sealed share names CKM_AES_GCM, which this token does not offer"


def test_tampered_cbc_hmac_blob_is_refused(token, open_hsms):
    hide_mechanisms(token.conf, NO_GCM)
    h = open_hsms(token.hsm_config())
    blob = h.seal(SHARE, os.urandom(40))
    header, body = parse_blob(blob)
    n = 2 + len(header.label)
    cases = {
        "label": (n - 1, "sealed blob names a key other than the node's KEK"),
        "iv": (n, BAD), "iv end": (n + 15, BAD),
        "ciphertext": (n + 16, BAD), "ciphertext end": (len(blob) - MAC_LEN - 1, BAD),
        "mac": (len(blob) - MAC_LEN, BAD), "mac end": (len(blob) - 1, BAD),
        "label length": (1, "sealed blob is truncated or malformed"),
    }
    for what, (pos, message) in cases.items():
        bad = bytearray(blob)
        bad[pos] ^= 0x01
        with pytest.raises(HSMIntegrityError) as e:
            h.unseal(SHARE, bytes(bad))
        assert str(e.value) == message, what
    for version, message in ((BLOB_VERSION, "sealed share names CKM_AES_GCM, which this token "
                              "does not offer"), (3, "not a sealed blob of a known version")):
        with pytest.raises(HSMIntegrityError) as e:
            h.unseal(SHARE, bytes([version]) + blob[1:])
        assert str(e.value) == message
    # the AAD: another node, key, epoch or kind
    for ctx in (SealContext("share", "key-2", 3), SealContext("share", "key-1", 4),
                SealContext("paillier", "key-1", 3)):
        with pytest.raises(HSMIntegrityError) as e:
            h.unseal(ctx, blob)
        assert str(e.value) == BAD.replace("share", ctx.kind)
    with pytest.raises(HSMIntegrityError) as e:
        h.unseal(SHARE, blob[:-1])
    assert str(e.value) == "sealed blob is truncated or malformed"
    assert h.unseal(SHARE, blob)  # the original still opens


def test_another_node_id_cannot_open_it(token):
    hide_mechanisms(token.conf, NO_GCM)
    with HSM.open(token.hsm_config(), node_id="node-1") as h:
        blob = h.seal(SHARE, b"x")
    with HSM.open(token.hsm_config(), node_id="node-2") as h:
        with pytest.raises(HSMIntegrityError) as e:
            h.unseal(SHARE, blob)
    assert str(e.value) == BAD


def test_a_token_with_no_authenticated_sealing_is_refused_by_name(token):
    hide_mechanisms(token.conf, NO_SEALING)
    before = object_files(token)
    with pytest.raises(HSMMechanismError) as e:
        HSM.open(token.hsm_config(), node_id=NODE_ID)
    assert str(e.value) == (
        "token 'mech-token': the token offers neither CKM_AES_GCM nor "
        "CKM_AES_CBC_PAD+CKM_SHA256_HMAC (missing: CKM_AES_GCM, CKM_AES_CBC_PAD, "
        "CKM_SHA256_HMAC); no authenticated sealing mechanism")
    assert e.value.code == "hsm_mechanism_missing"
    assert object_files(token) == before  # nothing was created


def test_gcm_gone_and_no_hmac_names_only_what_is_missing(token):
    hide_mechanisms(token.conf, "-,CKM_AES_GCM,CKM_SHA256_HMAC")
    with pytest.raises(HSMMechanismError) as e:
        HSM.open(token.hsm_config(), node_id=NODE_ID)
    assert str(e.value).endswith("(missing: CKM_AES_GCM, CKM_SHA256_HMAC); no authenticated "
                                 "sealing mechanism")


def test_a_token_without_ecdsa_is_refused_by_name(token):
    hide_mechanisms(token.conf, "-,CKM_ECDSA,CKM_ECDH1_DERIVE")
    with pytest.raises(HSMMechanismError) as e:
        HSM.open(token.hsm_config(), node_id=NODE_ID)
    assert str(e.value) == ("token 'mech-token' lacks mechanisms the node keys need: "
                            "CKM_ECDSA, CKM_ECDH1_DERIVE")


def test_blob_format_version_2_bounds():
    ok = build_blob("appliance/kek", b"\x00" * 16, b"\x01" * 16 + b"\x02" * 32, BLOB_VERSION_CBC_HMAC)
    assert parse_blob(ok)[0].version == BLOB_VERSION_CBC_HMAC
    for bad in (ok[:-1], ok[:-16], ok + b"\x00"):
        with pytest.raises(MalformedBlob):
            parse_blob(bad)
    with pytest.raises(ValueError):
        build_blob("appliance/kek", b"\x00" * 12, b"\x00" * 48, BLOB_VERSION_CBC_HMAC)
