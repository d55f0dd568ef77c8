"""The HSM layer against a real SoftHSM2 token: sealing, key attributes, errors,
concurrency through the single worker, reopening."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time

import pytest

from appliance.sealed import KEK_LABEL, SealContext, parse_blob, presig_key_label
from hsm import (
    HSM,
    HSMConfigError,
    HSMError,
    HSMIntegrityError,
    HSMKeyNotFoundError,
    HSMKeyPolicyError,
    HSMModuleError,
    HSMPinError,
    HSMTokenNotFoundError,
    HSMUnavailableError,
    Pin,
)
from hsm.config import HSMConfig

pytest.register_assert_rewrite("tests.hsm_fixtures")
from tests.hsm_fixtures import (  # noqa: E402
    NODE_ID,
    object_files,
    requires_softhsm,
    run_python,
)

# fixtures: softhsm_token, open_hsms, hsm, two_tokens
pytest_plugins = ["tests.hsm_fixtures"]

pytestmark = [pytest.mark.hsm, requires_softhsm]

SHARE = SealContext("share", "key-1", 3)


def presig_ctx(pid: bytes | None = None, signers=(1, 2)) -> SealContext:
    return SealContext.presignature("key-1", 3, pid or os.urandom(32), b"\x02" + b"\x11" * 32,
                                    signers)


# ---- seal / unseal ---------------------------------------------------------------------

def test_seal_unseal_round_trip(hsm):
    for size in (0, 1, 32, 768, 5000):
        secret = os.urandom(size)
        blob = hsm.seal(SHARE, secret)
        assert size < 8 or secret not in blob
        assert hsm.unseal(SHARE, blob) == secret
    # a fresh random nonce per seal
    a, b = hsm.seal(SHARE, b"same"), hsm.seal(SHARE, b"same")
    assert parse_blob(a)[0].nonce != parse_blob(b)[0].nonce and a != b
    assert parse_blob(a)[0].label == KEK_LABEL


def test_every_flipped_bit_region_is_an_integrity_error(hsm):
    secret = os.urandom(48)
    blob = hsm.seal(SHARE, secret)
    header, ct = parse_blob(blob)
    n = 2 + len(header.label)
    regions = {
        "version": [0],
        "label": [2, n - 1],
        "nonce": [n, n + 11],
        "ciphertext": [n + 12, n + 12 + 47],
        "tag": [len(blob) - 16, len(blob) - 1],
    }
    for positions in regions.values():
        for pos in positions:
            for bit in (0, 7):
                bad = bytearray(blob)
                bad[pos] ^= 1 << bit
                with pytest.raises(HSMIntegrityError):
                    hsm.unseal(SHARE, bytes(bad))
    for bad in (blob[:-1], blob[:20], b"", blob + b"\0"):
        with pytest.raises(HSMIntegrityError):
            hsm.unseal(SHARE, bad)
    # the session is fine afterwards (a bad tag is CKR_GENERAL_ERROR on SoftHSM 2.6)
    assert hsm.unseal(SHARE, blob) == secret


def test_different_aad_is_an_integrity_error(hsm):
    blob = hsm.seal(SHARE, b"share bytes")
    for other in (
        SealContext("share", "key-2", 3),
        SealContext("share", "key-1", 4),
        SealContext("paillier", "key-1", 3),
        SealContext("ring_pedersen", "key-1", 3),
    ):
        with pytest.raises(HSMIntegrityError) as ei:
            hsm.unseal(other, blob)
        assert "share bytes" not in str(ei.value)


def test_other_node_id_cannot_unseal(softhsm_token):
    cfg = softhsm_token.hsm_config()
    with HSM.open(cfg, node_id="node-1") as h:
        blob = h.seal(SHARE, b"bound to node-1")
    with HSM.open(cfg, node_id="node-2") as h:
        with pytest.raises(HSMIntegrityError):
            h.unseal(SHARE, blob)
    with HSM.open(cfg, node_id="node-1") as h:
        assert h.unseal(SHARE, blob) == b"bound to node-1"


def test_presignature_aad_binds_id_r_and_signer_set(hsm):
    ctx = presig_ctx()
    blob = hsm.seal_presignature(ctx, b"k_i, chi_i, ...")
    for other in (
        SealContext.presignature("key-1", 3, ctx.presig_id, b"\x03" + b"\x11" * 32, (1, 2)),
        SealContext.presignature("key-1", 3, ctx.presig_id, ctx.R, (1, 3)),
        SealContext.presignature("key-1", 4, ctx.presig_id, ctx.R, (1, 2)),
        SealContext.presignature("key-2", 3, ctx.presig_id, ctx.R, (1, 2)),
    ):
        with pytest.raises(HSMIntegrityError):
            hsm.unseal_presignature(other, blob)
    with pytest.raises(HSMIntegrityError):  # another presignature id: names another key
        hsm.unseal_presignature(presig_ctx(), blob)
    with pytest.raises(ValueError):  # presignatures never go through the KEK path
        hsm.unseal(ctx, blob)
    with pytest.raises(ValueError):
        hsm.seal(ctx, b"x")
    # signer set order does not matter, the set does
    same = SealContext.presignature("key-1", 3, ctx.presig_id, ctx.R, (2, 1))
    assert hsm.unseal_presignature(same, blob) == b"k_i, chi_i, ..."


def test_each_presignature_has_its_own_key_destroyed_when_consumed(hsm):
    ctxs = [presig_ctx() for _ in range(3)]
    blobs = [hsm.seal_presignature(c, b"presig %d" % i) for i, c in enumerate(ctxs)]
    labels = [presig_key_label(c.presig_id) for c in ctxs]
    assert sorted(labels) == hsm.list_presignature_keys()
    assert [parse_blob(b)[0].label for b in blobs] == labels
    assert hsm.consume_presignature(ctxs[1], blobs[1]) == b"presig 1"
    assert not hsm.presignature_key_exists(labels[1])
    assert hsm.list_presignature_keys() == sorted([labels[0], labels[2]])
    with pytest.raises(HSMKeyNotFoundError):
        hsm.consume_presignature(ctxs[1], blobs[1])
    with pytest.raises(HSMKeyPolicyError):  # one key per presignature, never two
        hsm.seal_presignature(ctxs[0], b"again")
    # a tampered blob still burns the key: the presignature is dead either way
    bad = bytearray(blobs[2])
    bad[-1] ^= 1
    with pytest.raises(HSMIntegrityError):
        hsm.consume_presignature(ctxs[2], bytes(bad))
    assert not hsm.presignature_key_exists(labels[2])
    assert hsm.destroy_presignature_key(labels[0]) is True
    assert hsm.destroy_presignature_key(labels[0]) is False
    with pytest.raises(ValueError):
        hsm.destroy_presignature_key(KEK_LABEL)


# ---- key attributes --------------------------------------------------------------------

def test_keys_read_back_sensitive_non_extractable_with_only_their_capabilities(
    softhsm_token, open_hsms
):
    import pkcs11
    from pkcs11 import Attribute as A

    first = open_hsms(softhsm_token.hsm_config())  # creates the keys
    ctx = presig_ctx()
    first.seal_presignature(ctx, b"presig")
    pub = first.public_keys
    first.close()
    h = open_hsms(softhsm_token.hsm_config())  # loads them back from the token
    assert h.public_keys == pub

    caps = [A.ENCRYPT, A.DECRYPT, A.WRAP, A.UNWRAP, A.SIGN, A.VERIFY, A.DERIVE]
    private_caps = [A.DECRYPT, A.UNWRAP, A.SIGN, A.SIGN_RECOVER, A.DERIVE]
    expected = {
        "kek": {A.ENCRYPT, A.DECRYPT},
        "identity": {A.SIGN},
        "transport": {A.DERIVE},
        presig_key_label(ctx.presig_id): {A.ENCRYPT, A.DECRYPT},
    }
    for which, allowed in expected.items():
        attrs = [A.SENSITIVE, A.EXTRACTABLE, A.NEVER_EXTRACTABLE, A.ALWAYS_SENSITIVE,
                 A.TOKEN, A.PRIVATE, A.MODIFIABLE, A.COPYABLE, A.VALUE]
        secret_key = which == "kek" or which.startswith("appliance/presig/")
        cap_list = caps if secret_key else private_caps
        got = h.key_attributes(which, attrs + cap_list)
        assert got[A.SENSITIVE] is True, which
        assert got[A.EXTRACTABLE] is False, which
        assert got[A.NEVER_EXTRACTABLE] is True, which
        assert got[A.ALWAYS_SENSITIVE] is True, which
        assert got[A.TOKEN] is True and got[A.PRIVATE] is True, which
        assert got[A.MODIFIABLE] is False and got[A.COPYABLE] is False, which
        assert isinstance(got[A.VALUE], pkcs11.exceptions.AttributeSensitive), which
        assert {c for c in cap_list if got[c]} == allowed, which
    assert h.key_attributes("kek", [A.VALUE_LEN])[A.VALUE_LEN] == 32
    assert h.key_attributes("kek", [A.DESTROYABLE])[A.DESTROYABLE] is False


def test_a_weak_key_on_the_token_is_refused(softhsm_token):
    """Someone pre-creates an extractable 'KEK' under our label: the node refuses it."""
    from pkcs11 import Attribute as A
    from pkcs11 import KeyType

    from hsm.worker import get_worker, module_state

    cfg = softhsm_token.hsm_config()

    def plant():
        st = module_state(cfg.module)
        lib = st.ensure(str(cfg.softhsm_conf))
        st.rescan()
        lib = st.lib
        token = lib.get_token(token_label=cfg.token_label)
        s = token.open(rw=True, user_pin=cfg.read_pin().reveal())
        try:
            s.generate_key(KeyType.AES, 256, label=KEK_LABEL, store=True,
                           template={A.SENSITIVE: False, A.EXTRACTABLE: True,
                                     A.ENCRYPT: True, A.DECRYPT: True})
        finally:
            s.close()

    get_worker().call(plant)
    with pytest.raises(HSMKeyPolicyError) as ei:
        HSM.open(cfg, node_id=NODE_ID)
    assert "EXTRACTABLE" in str(ei.value) and "SENSITIVE" in str(ei.value)


def test_keys_are_not_created_when_told_not_to(softhsm_token):
    before = object_files(softhsm_token)
    with pytest.raises(HSMKeyNotFoundError):
        HSM.open(softhsm_token.hsm_config(), node_id=NODE_ID, create_keys=False)
    assert object_files(softhsm_token) == before


# ---- identity key ----------------------------------------------------------------------

@pytest.mark.parametrize("curve", ["secp256k1", "secp256r1"])
def test_identity_signature_verifies(softhsm_token, open_hsms, curve):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import (
        Prehashed,
        encode_dss_signature,
    )

    h = open_hsms(softhsm_token.hsm_config(identity_curve=curve))
    pub = h.identity_public_key
    assert len(pub) == 33 and pub[0] in (2, 3)
    c = ec.SECP256K1() if curve == "secp256k1" else ec.SECP256R1()
    key = ec.EllipticCurvePublicKey.from_encoded_point(c, pub)
    order = (0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
             if curve == "secp256k1"
             else 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551)
    for _ in range(8):
        digest = os.urandom(32)
        sig = h.sign_digest(digest)
        assert len(sig) == 64
        r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
        assert s <= order // 2  # low-S
        key.verify(encode_dss_signature(r, s), digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    if curve == "secp256k1":
        import coincurve

        digest = os.urandom(32)
        sig = h.sign_digest(digest)
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        assert coincurve.PublicKey(pub).verify(der, digest, hasher=None)
    with pytest.raises(ValueError):
        h.sign_digest(b"short")


# ---- errors ----------------------------------------------------------------------------

def test_wrong_pin_is_a_clear_error_and_writes_nothing(softhsm_token, tmp_path):
    right = softhsm_token.pin_file.read_text().strip()
    before = object_files(softhsm_token)
    wrong = "wrong-" + os.urandom(4).hex()
    with pytest.raises(HSMPinError) as ei:
        HSM.open(softhsm_token.hsm_config(pin=wrong), node_id=NODE_ID)
    text = str(ei.value) + repr(ei.value)
    assert "refused the PIN" in text and softhsm_token.label in text
    assert wrong not in text and right not in text
    assert ei.value.__cause__ is None and ei.value.__suppress_context__
    # also through a PIN file and an environment variable
    pin_file = tmp_path / "wrong.pin"
    pin_file.write_text(wrong + "\n")
    pin_file.chmod(0o600)  # a PIN file open to other users is refused before any login
    with pytest.raises(HSMPinError):
        HSM.open(softhsm_token.hsm_config(pin_file=pin_file), node_id=NODE_ID)
    os.environ["TEST_HSM_WRONG_PIN"] = wrong
    try:
        cfg = softhsm_token.hsm_config(pin_file=None, pin_env="TEST_HSM_WRONG_PIN")
        with pytest.raises(HSMPinError):
            HSM.open(cfg, node_id=NODE_ID)
        assert wrong not in repr(cfg)
    finally:
        del os.environ["TEST_HSM_WRONG_PIN"]
    assert object_files(softhsm_token) == before == {}


def test_missing_token_module_and_pin_are_clear_errors(softhsm_token, tmp_path):
    before = object_files(softhsm_token)
    with pytest.raises(HSMTokenNotFoundError) as ei:
        HSM.open(softhsm_token.hsm_config(token_label="no-such-token"), node_id=NODE_ID)
    assert "no-such-token" in str(ei.value)
    with pytest.raises(HSMModuleError) as ei:
        HSM.open(softhsm_token.hsm_config(module=str(tmp_path / "libnothing.so")), node_id=NODE_ID)
    assert "libnothing.so" in str(ei.value)
    with pytest.raises(HSMConfigError):
        HSMConfig(token_label="x")  # no PIN source
    with pytest.raises(HSMConfigError) as ei:
        HSM.open(softhsm_token.hsm_config(pin_file=tmp_path / "absent.pin"), node_id=NODE_ID)
    assert "absent.pin" in str(ei.value)
    with pytest.raises(HSMConfigError):
        HSM.open(softhsm_token.hsm_config(pin_file=None, pin_env="TEST_HSM_UNSET_VAR"),
                 node_id=NODE_ID)
    with pytest.raises(HSMConfigError):
        HSMConfig.from_mapping({"token_label": "x", "pin": "1234"})
    for exc in (HSMPinError, HSMTokenNotFoundError, HSMModuleError, HSMIntegrityError,
                HSMUnavailableError, HSMConfigError):
        from appliance.errors import ApplianceError

        assert issubclass(exc, HSMError) and issubclass(exc, ApplianceError)
    assert object_files(softhsm_token) == before == {}


def test_pin_never_in_repr():
    p = Pin("123456-secret")
    assert "123456" not in repr(p) and "123456" not in str(p)
    cfg = HSMConfig(token_label="t", pin=p)
    assert "123456" not in repr(cfg)
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(p)


def test_one_softhsm_configuration_per_process_at_a_time(softhsm_token, tmp_path, open_hsms):
    from hsm.softhsm import init_token

    other = init_token(tmp_path / "other", "other-token")
    h = open_hsms(softhsm_token.hsm_config())
    with pytest.raises(HSMConfigError):
        HSM.open(other.hsm_config(), node_id=NODE_ID)
    with pytest.raises(HSMConfigError):  # the same token twice in one process
        HSM.open(softhsm_token.hsm_config(), node_id=NODE_ID)
    blob = h.seal(SHARE, b"x")
    h.close()
    with HSM.open(other.hsm_config(), node_id=NODE_ID) as o:  # switches configuration
        with pytest.raises(HSMIntegrityError):
            o.unseal(SHARE, blob)
    with HSM.open(softhsm_token.hsm_config(), node_id=NODE_ID) as h2:  # and back
        assert h2.unseal(SHARE, blob) == b"x"


def test_token_disappears_and_comes_back(softhsm_token, hsm):
    blob = hsm.seal(SHARE, b"survives")
    away = softhsm_token.token_dir.with_name("tokens.away")
    shutil.move(softhsm_token.token_dir, away)
    try:
        with pytest.raises(HSMUnavailableError):
            hsm.seal(SHARE, b"y")
        with pytest.raises(HSMUnavailableError):
            hsm.unseal(SHARE, blob)
        assert hsm.health() is False
    finally:
        shutil.move(away, softhsm_token.token_dir)
    assert hsm.unseal(SHARE, blob) == b"survives"  # reopened, logged in again
    assert hsm.unseal(SHARE, hsm.seal(SHARE, b"z")) == b"z"
    assert hsm.health() is True


# ---- concurrency -----------------------------------------------------------------------

@pytest.mark.asyncio
async def test_50_tasks_seal_and_unseal_200_blobs(hsm):
    secrets_ = [os.urandom(16 + i % 700) for i in range(200)]
    ctxs = [SealContext("share", f"key-{i % 7}", i % 3) for i in range(200)]
    gaps = []
    done = asyncio.Event()

    async def ticker():
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    async def task(t):
        out = []
        for i in range(t, 200, 50):
            blob = await hsm.seal_async(ctxs[i], secrets_[i])
            await asyncio.sleep(0)
            out.append((i, await hsm.unseal_async(ctxs[i], blob)))
        return out

    tick = asyncio.create_task(ticker())
    results = await asyncio.gather(*(task(t) for t in range(50)))
    done.set()
    await tick
    got = dict(pair for r in results for pair in r)
    assert len(got) == 200 and all(got[i] == secrets_[i] for i in range(200))
    assert max(gaps) < 0.5  # the event loop kept running while the worker worked


@pytest.mark.asyncio
async def test_async_presignatures_and_sync_threads_together(hsm):
    """Async tasks and plain threads hammer the token at once: all calls are serialized
    on the one worker (SoftHSM 2.6 would crash otherwise)."""
    errors = []

    def thread_work(k):
        try:
            for _ in range(15):
                s = os.urandom(40)
                assert hsm.unseal(SHARE, hsm.seal(SHARE, s)) == s
                hsm.sign_digest(os.urandom(32))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=thread_work, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()

    async def presig_task(i):
        ctx = presig_ctx()
        blob = await hsm.seal_presignature_async(ctx, b"p%d" % i)
        return await hsm.consume_presignature_async(ctx, blob)

    out = await asyncio.gather(*(presig_task(i) for i in range(20)))
    for t in threads:
        t.join()
    assert not errors
    assert out == [b"p%d" % i for i in range(20)]
    assert hsm.list_presignature_keys() == []


# ---- hardening -------------------------------------------------------------------------

def test_core_dumps_can_be_disabled_in_a_secret_holding_process():
    r = run_python("""
        from appliance.hardening import core_dumps_disabled, disable_core_dumps
        disable_core_dumps()
        import resource
        assert resource.getrlimit(resource.RLIMIT_CORE) == (0, 0)
        assert core_dumps_disabled()
        print("ok")
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"
