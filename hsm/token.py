"""A node's token: its keys, seal/unseal, per-presignature keys, identity signatures and
transport decryption. Every PKCS#11 call runs on the process's single worker thread.

Keys (created on first use, loaded and checked afterwards; a key found with weaker
attributes than these is refused with :class:`HSMKeyPolicyError`):

=====================  ===========================  =====================================
label                  type                         capabilities
=====================  ===========================  =====================================
appliance/kek          AES-256 secret key           ENCRYPT, DECRYPT
appliance/identity     EC private key (secp256k1    SIGN (CKM_ECDSA over a digest, raw
                       or P-256) + public key       r||s); public key VERIFY-less, public
appliance/transport    EC P-256 private key +       DERIVE (CKM_ECDH1_DERIVE)
                       public key
appliance/presig/<id>  AES-256 secret key, one per  ENCRYPT, DECRYPT; destroyed when the
                       presignature                 presignature is spent
appliance/nonce/<id>   AES-256 secret key, one per  ENCRYPT, DECRYPT; destroyed when the
                       pooled FROST nonce pair      nonce pair is spent
appliance/mac          256-bit generic secret       SIGN, VERIFY (CKM_SHA256_HMAC); only on
                                                    a token without CKM_AES_GCM
=====================  ===========================  =====================================

The sealing mechanism (AES-GCM, else AES-CBC-PAD + HMAC-SHA256) is chosen when the token
opens from the mechanisms it offers (:mod:`hsm.sealing`); a token with no authenticated
combination, or without ECDSA / ECDH / key generation, is refused by name.

All private and secret keys are token objects with CKA_SENSITIVE true, CKA_EXTRACTABLE
false (hence NEVER_EXTRACTABLE and ALWAYS_SENSITIVE true), CKA_PRIVATE true,
CKA_MODIFIABLE false (no capability can be added later) and CKA_COPYABLE false. The node
keys are also CKA_DESTROYABLE false; per-presignature keys must be destroyable.

Sync methods (``seal``) block the calling thread; ``*_async`` methods (``seal_async``)
await the worker without blocking the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import pkcs11
from pkcs11 import Attribute as A
from pkcs11 import KeyType, Mechanism, ObjectClass
from pkcs11.util.ec import encode_named_curve_parameters

from appliance.sealed import (
    IDENTITY_LABEL,
    KEK_LABEL,
    MAC_LABEL,
    PRESIG_LABEL_PREFIX,
    NONCE_LABEL_PREFIX,
    TRANSPORT_LABEL,
    BlobHeader,
    MalformedBlob,
    SealContext,
    parse_blob,
    single_use_label_prefix,
)
from hsm import sealing, transport
from hsm.config import HSMConfig, Pin
from hsm.key_policy import (
    AES_POLICY,
    IDENTITY_POLICY,
    MAC_POLICY,
    TRANSPORT_POLICY,
    NO_CAPS_SECRET,
    PUBLIC_KEY_TEMPLATE,
    aes_key_template,
    check_policy,
    compress_point,
    ec_private_template,
    mac_key_template,
    point_from_ec_point,
)
from hsm.errors import (
    HSMConfigError,
    HSMError,
    HSMIntegrityError,
    HSMKeyNotFoundError,
    HSMKeyPolicyError,
    HSMModuleError,
    HSMPinError,
    HSMTokenNotFoundError,
    HSMUnavailableError,
)
from hsm.worker import ModuleState, get_worker, module_state

_CURVE_ORDERS = {
    "secp256k1": 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141,
    "secp256r1": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
}

# Errors that mean "the session/token went away", not "your input is bad".
_LOST = (
    pkcs11.exceptions.ObjectHandleInvalid,
    pkcs11.exceptions.KeyHandleInvalid,
    pkcs11.exceptions.SessionHandleInvalid,
    pkcs11.exceptions.SessionClosed,
    pkcs11.exceptions.DeviceRemoved,
    pkcs11.exceptions.DeviceError,
    pkcs11.exceptions.TokenNotPresent,
    pkcs11.exceptions.TokenNotRecognised,
    pkcs11.exceptions.UserNotLoggedIn,
    pkcs11.exceptions.GeneralError,
)
# What SoftHSM 2.6 returns for a GCM tag mismatch (CKR_GENERAL_ERROR) and kin.
_DECRYPT_FAILURES = (
    pkcs11.exceptions.GeneralError,
    pkcs11.exceptions.EncryptedDataInvalid,
    pkcs11.exceptions.EncryptedDataLenRange,
    pkcs11.exceptions.DataLenRange,
    pkcs11.exceptions.DataInvalid,
    pkcs11.exceptions.FunctionFailed,
)


class _TokenLost(Exception):
    """Internal: the session or token went away; reopen and retry once."""


def _is_lost(exc: BaseException) -> bool:
    if isinstance(exc, (_TokenLost, *_LOST)):
        return True
    return isinstance(exc, pkcs11.PKCS11Error) and "not initialized" in str(exc)


def _parse(blob: bytes) -> tuple[BlobHeader, bytes]:
    """:func:`appliance.sealed.parse_blob`; a malformed blob fails authentication here."""
    try:
        return parse_blob(blob)
    except MalformedBlob as exc:
        raise HSMIntegrityError(str(exc)) from None


@dataclass(frozen=True)
class PublicKeys:
    identity: bytes  # compressed SEC1, 33 bytes
    identity_uncompressed: bytes  # 65 bytes
    transport: bytes  # uncompressed SEC1 P-256, 65 bytes


class HSM:
    """An open token. Create with :meth:`open` / :meth:`open_async`; close when done."""

    def __init__(self, config: HSMConfig, node_id: str, *, _pin: Pin) -> None:
        if not node_id:
            raise HSMConfigError("node_id is required (it is bound into every seal)")
        self.config = config
        self.node_id = node_id
        self._pin = _pin
        self._worker = get_worker()
        self._mod: ModuleState | None = None
        self._conf = str(config.softhsm_conf) if config.softhsm_conf is not None else None
        # worker-thread state
        self._session: Any = None
        self._gen = -1
        self._keys: dict[str, Any] = {}
        self._closed = False
        self._registered = False
        self._public: PublicKeys | None = None
        self._mech: sealing.Mechanisms | None = None

    def __repr__(self) -> str:
        return f"<HSM token={self.config.token_label!r} node={self.node_id!r}>"

    # ---- opening and closing -------------------------------------------------------
    @classmethod
    def open(cls, config: HSMConfig, *, node_id: str, create_keys: bool = True) -> "HSM":
        """Open the token, log in, load (or on first use create) the node's keys.

        Raises :class:`HSMModuleError`, :class:`HSMTokenNotFoundError`,
        :class:`HSMPinError`, :class:`HSMConfigError`, :class:`HSMKeyPolicyError`,
        :class:`HSMKeyNotFoundError` (keys missing and ``create_keys`` false). On error
        nothing has been created on the token.
        """
        self = cls(config, node_id, _pin=config.read_pin())
        self._worker.call(self._w_open, create_keys)
        return self

    @classmethod
    async def open_async(
        cls, config: HSMConfig, *, node_id: str, create_keys: bool = True
    ) -> "HSM":
        self = cls(config, node_id, _pin=config.read_pin())
        await self._worker.acall(self._w_open, create_keys)
        return self

    def close(self) -> None:
        if not self._closed:
            self._worker.call(self._w_close)

    async def close_async(self) -> None:
        if not self._closed:
            await self._worker.acall(self._w_close)

    def __enter__(self) -> "HSM":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> "HSM":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close_async()

    @property
    def closed(self) -> bool:
        return self._closed

    # ---- public keys ---------------------------------------------------------------
    @property
    def public_keys(self) -> PublicKeys:
        assert self._public is not None
        return self._public

    @property
    def identity_public_key(self) -> bytes:
        """The node's identity key, compressed SEC1 (33 bytes), curve :attr:`identity_curve`."""
        return self.public_keys.identity

    @property
    def identity_curve(self) -> str:
        return self.config.identity_curve

    @property
    def sealing_mechanism(self) -> str:
        """``CKM_AES_GCM`` or ``CKM_AES_CBC_PAD+CKM_SHA256_HMAC`` (:mod:`hsm.sealing`)."""
        assert self._mech is not None
        return self._mech.sealing

    @property
    def transport_public_key(self) -> bytes:
        """The node's transport key, uncompressed SEC1 P-256 (65 bytes)."""
        return self.public_keys.transport

    # ---- sealing with the node's KEK -----------------------------------------------
    def seal(self, context: SealContext, plaintext: bytes) -> bytes:
        """Under the node's KEK, inside the HSM (not for presignatures), with the token's
        sealing mechanism (:attr:`sealing_mechanism`)."""
        return self._worker.call(self._run, self._w_seal, context, bytes(plaintext))

    async def seal_async(self, context: SealContext, plaintext: bytes) -> bytes:
        return await self._worker.acall(self._run, self._w_seal, context, bytes(plaintext))

    def unseal(self, context: SealContext, blob: bytes) -> bytes:
        """The plaintext, or :class:`HSMIntegrityError`."""
        return self._worker.call(self._run, self._w_unseal, context, bytes(blob))

    async def unseal_async(self, context: SealContext, blob: bytes) -> bytes:
        return await self._worker.acall(self._run, self._w_unseal, context, bytes(blob))

    # ---- single-use values (presignatures, FROST nonce pairs): one HSM key each --------
    def seal_presignature(self, context: SealContext, plaintext: bytes) -> bytes:
        """Create the value's own AES-256 token key and seal under it; ``context`` is a
        presignature's or a pooled FROST nonce pair's (``SealContext.frost_nonce``). The blob
        names that key (:meth:`appliance.sealed.SealContext.object_key_label`)."""
        return self._worker.call(self._run, self._w_seal_presig, context, bytes(plaintext))

    async def seal_presignature_async(self, context: SealContext, plaintext: bytes) -> bytes:
        return await self._worker.acall(self._run, self._w_seal_presig, context, bytes(plaintext))

    def unseal_presignature(self, context: SealContext, blob: bytes) -> bytes:
        """Unseal without spending (checks, tests). Signing uses :meth:`consume_presignature`."""
        return self._worker.call(self._run, self._w_unseal_presig, context, bytes(blob), False)

    async def unseal_presignature_async(self, context: SealContext, blob: bytes) -> bytes:
        return await self._worker.acall(
            self._run, self._w_unseal_presig, context, bytes(blob), False
        )

    def consume_presignature(self, context: SealContext, blob: bytes) -> bytes:
        """Unseal, then destroy the presignature's key (also when unsealing fails).

        Call only after the store has durably marked the presignature spent
        (:meth:`appliance.storage.Store.take_presignature`). :class:`HSMKeyNotFoundError`
        if its key is already gone (spent before, e.g. a restored database).
        """
        return self._worker.call(self._run, self._w_unseal_presig, context, bytes(blob), True)

    async def consume_presignature_async(self, context: SealContext, blob: bytes) -> bytes:
        return await self._worker.acall(
            self._run, self._w_unseal_presig, context, bytes(blob), True
        )

    def destroy_presignature_key(self, label: str) -> bool:
        """Destroy a per-presignature key by label; False if it was already gone."""
        return self._worker.call(self._run, self._w_destroy_presig, label)

    async def destroy_presignature_key_async(self, label: str) -> bool:
        return await self._worker.acall(self._run, self._w_destroy_presig, label)

    def presignature_key_exists(self, label: str) -> bool:
        return self._worker.call(self._run, self._w_presig_exists, label)

    def list_presignature_keys(self) -> list[str]:
        return self._worker.call(self._run, self._w_list_presig)

    def list_nonce_keys(self) -> list[str]:
        """Labels of the pooled FROST nonce pairs' own keys (``appliance/nonce/<id>``)."""
        return self._worker.call(self._run, self._w_list_presig, NONCE_LABEL_PREFIX)

    # ---- identity and transport ----------------------------------------------------
    def sign_digest(self, digest: bytes) -> bytes:
        """ECDSA (CKM_ECDSA) with the identity key over a 32-byte digest: raw r||s (64
        bytes), s normalized to the low half."""
        return self._worker.call(self._run, self._w_sign, bytes(digest))

    async def sign_digest_async(self, digest: bytes) -> bytes:
        return await self._worker.acall(self._run, self._w_sign, bytes(digest))

    def transport_decrypt(self, envelope: bytes, *, context: bytes = b"") -> bytes:
        """Open an envelope made by :func:`hsm.transport.encrypt_to` for this node."""
        eph, _, _ = transport.parse_envelope(envelope)
        z = self._worker.call(self._run, self._w_ecdh, eph)
        try:
            return transport.open_with_shared_secret(
                z, self.transport_public_key, envelope, context
            )
        finally:
            del z

    async def transport_decrypt_async(self, envelope: bytes, *, context: bytes = b"") -> bytes:
        eph, _, _ = transport.parse_envelope(envelope)
        z = await self._worker.acall(self._run, self._w_ecdh, eph)
        try:
            return transport.open_with_shared_secret(
                z, self.transport_public_key, envelope, context
            )
        finally:
            del z

    # ---- inspection ----------------------------------------------------------------
    def key_attributes(self, which: str, attributes: list) -> dict:
        """Attributes of a node key (``kek``, ``identity``, ``transport``, or a presignature
        key label), each read on its own; an attribute the token refuses to reveal maps
        to the exception instance it raised (how tests check that CKA_VALUE is sealed)."""
        return self._worker.call(self._run, self._w_attrs, which, list(attributes))

    def health(self) -> bool:
        """True if the token answers (reopening it if it went away and came back)."""
        try:
            self._worker.call(self._run, lambda: self._w_probe() or True)
        except HSMError:
            return False
        return True

    # =================================================================================
    # Worker-thread side. Nothing below may be called from another thread.
    # =================================================================================
    def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn`` with a live session; if the token went away, reinitialize the
        library, reopen, log in again, and retry once."""
        if self._closed:
            raise HSMUnavailableError(f"token {self.config.token_label!r} is closed")
        self._w_ensure()
        try:
            return fn(*args)
        except Exception as exc:
            if not _is_lost(exc):
                if isinstance(exc, pkcs11.PKCS11Error):
                    raise self._map(exc) from None
                raise
        self._w_recover()
        try:
            return fn(*args)
        except Exception as exc:
            if _is_lost(exc):
                raise HSMUnavailableError(
                    f"token {self.config.token_label!r} is not answering"
                ) from None
            if isinstance(exc, pkcs11.PKCS11Error):
                raise self._map(exc) from None
            raise

    def _map(self, exc: Exception) -> HSMError:
        return HSMError(
            f"PKCS#11 call on token {self.config.token_label!r} failed ({type(exc).__name__})"
        )

    def _w_ensure(self) -> None:
        """A live session for the current library generation (reopen if stale)."""
        assert self._mod is not None
        if self._session is not None and self._gen == self._mod.generation:
            return
        try:
            self._mod.ensure(self._conf)
            self._w_reopen()
        except (HSMTokenNotFoundError, HSMModuleError, HSMUnavailableError, _TokenLost):
            self._w_recover()
        except pkcs11.PKCS11Error as exc:
            if not _is_lost(exc):
                raise self._map(exc) from None
            self._w_recover()

    def _w_recover(self) -> None:
        """Reinitialize the library, reopen the session, log in, find the keys again;
        :class:`HSMUnavailableError` while the token stays away."""
        assert self._mod is not None
        self._session = None
        self._keys = {}
        unavailable = HSMUnavailableError(
            f"token {self.config.token_label!r} is not present (yet)"
        )
        try:
            self._mod.rescan()
            self._w_reopen()
        except (HSMTokenNotFoundError, HSMModuleError, HSMUnavailableError, _TokenLost):
            self._session = None
            raise unavailable from None
        except pkcs11.PKCS11Error as exc:
            self._session = None
            if _is_lost(exc):
                raise unavailable from None
            raise self._map(exc) from None

    def _w_reopen(self) -> None:
        """Open a session and find the keys again; all or nothing."""
        try:
            self._w_open_session(rescan_if_missing=False)
            self._w_load_keys(create=False)
        except BaseException:
            self._w_close_session()
            raise

    def _w_open_session(self, *, rescan_if_missing: bool) -> None:
        assert self._mod is not None
        label = self.config.token_label
        lib = self._mod.lib
        try:
            token = lib.get_token(token_label=label)
        except pkcs11.exceptions.NoSuchToken:
            if not rescan_if_missing:
                raise HSMTokenNotFoundError(f"no token labelled {label!r} is present") from None
            self._mod.rescan()  # a token initialized after C_Initialize is seen only now
            lib = self._mod.lib
            try:
                token = lib.get_token(token_label=label)
            except pkcs11.exceptions.NoSuchToken:
                raise HSMTokenNotFoundError(
                    f"no token labelled {label!r} is present "
                    f"(module {self.config.module!r})"
                ) from None
        except pkcs11.exceptions.MultipleTokensReturned:
            raise HSMConfigError(f"more than one token is labelled {label!r}") from None
        except pkcs11.PKCS11Error as exc:
            if _is_lost(exc):
                raise HSMUnavailableError(f"token {label!r} is not answering") from None
            raise
        try:
            session = token.open(rw=True, user_pin=self._pin.reveal())
        except (
            pkcs11.exceptions.PinIncorrect,
            pkcs11.exceptions.PinInvalid,
            pkcs11.exceptions.PinLenRange,
        ):
            raise HSMPinError(f"token {label!r} refused the PIN") from None
        except pkcs11.exceptions.PinLocked:
            raise HSMPinError(f"the PIN of token {label!r} is locked") from None
        except pkcs11.exceptions.PinExpired:
            raise HSMPinError(f"the PIN of token {label!r} has expired") from None
        except pkcs11.exceptions.UserAlreadyLoggedIn:
            raise HSMConfigError(
                f"token {label!r} is already logged in by this process"
            ) from None
        self._session = session
        self._gen = self._mod.generation
        self._keys = {}

    def _w_open(self, create_keys: bool) -> None:
        label = self.config.token_label
        self._mod = module_state(self.config.module)
        if label in self._mod.open_tokens:
            raise HSMConfigError(f"token {label!r} is already open in this process")
        self._mod.ensure(self._conf)
        self._w_open_session(rescan_if_missing=True)
        try:
            slot = self._session.token.slot
            self._mech = sealing.choose(slot.get_mechanisms(), slot.get_mechanism_info, label)
            self._w_load_keys(create=create_keys)
        except BaseException:
            self._w_close_session()
            raise
        self._mod.open_tokens.add(label)
        self._registered = True

    def _w_close_session(self) -> None:
        s, self._session, self._keys = self._session, None, {}
        if s is not None and self._mod is not None and self._gen == self._mod.generation:
            try:
                s.close()
            except Exception:
                pass

    def _w_close(self) -> None:
        if self._closed:
            return
        self._w_close_session()
        self._closed = True
        if self._registered and self._mod is not None:
            self._mod.open_tokens.discard(self.config.token_label)
            self._registered = False

    # ---- node keys -------------------------------------------------------------------
    def _w_find(self, cls: ObjectClass, label: str) -> Any | None:
        try:
            return self._session.get_key(object_class=cls, label=label)
        except pkcs11.exceptions.NoSuchKey:
            return None
        except pkcs11.exceptions.MultipleObjectsReturned:
            raise HSMKeyPolicyError(f"more than one key labelled {label!r}") from None

    def _w_load_keys(self, *, create: bool) -> None:
        s = self._session
        kek = self._w_find(ObjectClass.SECRET_KEY, KEK_LABEL)
        idk = self._w_find(ObjectClass.PRIVATE_KEY, IDENTITY_LABEL)
        idp = self._w_find(ObjectClass.PUBLIC_KEY, IDENTITY_LABEL)
        trk = self._w_find(ObjectClass.PRIVATE_KEY, TRANSPORT_LABEL)
        trp = self._w_find(ObjectClass.PUBLIC_KEY, TRANSPORT_LABEL)
        mac = self._w_find(ObjectClass.SECRET_KEY, MAC_LABEL)
        assert self._mech is not None
        need_mac = self._mech.sealing == sealing.CBC_HMAC
        missing = [n for n, k in (("kek", kek), ("identity", idk), ("identity public", idp),
                                  ("transport", trk), ("transport public", trp),
                                  ("mac", mac if need_mac else True)) if k is None]
        if missing and not create:
            raise HSMKeyNotFoundError(
                f"token {self.config.token_label!r} lacks the node keys: {', '.join(missing)}"
            )
        if (idk is None) != (idp is None) or (trk is None) != (trp is None):
            raise HSMKeyPolicyError(
                f"token {self.config.token_label!r} holds half of a key pair: "
                f"{', '.join(missing)}"
            )
        if kek is None:
            kek = s.generate_key(
                KeyType.AES, 256, label=KEK_LABEL, id=b"kek", store=True,
                template=aes_key_template(destroyable=False),
            )
        if mac is None and need_mac:
            mac = s.generate_key(
                KeyType.GENERIC_SECRET, 256, label=MAC_LABEL, id=b"mac", store=True,
                template=mac_key_template(),
            )
        if idk is None:
            idp, idk = self._w_generate_ec(IDENTITY_LABEL, self.config.identity_curve, A.SIGN)
        if trk is None:
            trp, trk = self._w_generate_ec(TRANSPORT_LABEL, "secp256r1", A.DERIVE)
        check_policy(kek, {**AES_POLICY, A.VALUE_LEN: 32}, "the key-encryption key")
        check_policy(idk, IDENTITY_POLICY, "the identity key")
        check_policy(trk, TRANSPORT_POLICY, "the transport key")
        if mac is not None:
            check_policy(mac, {**MAC_POLICY, A.VALUE_LEN: 32}, "the MAC key")
        want = encode_named_curve_parameters(self.config.identity_curve)
        if idk[A.EC_PARAMS] != want or idp[A.EC_PARAMS] != want:
            raise HSMKeyPolicyError("the identity key is not on the configured curve")
        p256 = encode_named_curve_parameters("secp256r1")
        if trk[A.EC_PARAMS] != p256 or trp[A.EC_PARAMS] != p256:
            raise HSMKeyPolicyError("the transport key is not on P-256")
        ident = point_from_ec_point(idp[A.EC_POINT])
        trans = point_from_ec_point(trp[A.EC_POINT])
        pub = PublicKeys(compress_point(ident), ident, trans)
        if self._public is not None and self._public != pub:
            raise HSMKeyPolicyError(
                f"the keys of token {self.config.token_label!r} changed while it was away"
            )
        self._public = pub
        self._keys = {KEK_LABEL: kek, IDENTITY_LABEL: idk, TRANSPORT_LABEL: trk, MAC_LABEL: mac}

    def _w_generate_ec(self, label: str, curve: str, capability: Any) -> tuple[Any, Any]:
        params = self._session.create_domain_parameters(
            KeyType.EC, {A.EC_PARAMS: encode_named_curve_parameters(curve)}, local=True
        )
        return params.generate_keypair(
            store=True, label=label, id=label.rsplit("/", 1)[-1].encode(),
            capabilities=0,
            public_template=dict(PUBLIC_KEY_TEMPLATE),
            private_template=ec_private_template(capability),
        )

    def _w_probe(self) -> None:
        """Raise :class:`_TokenLost` unless the session and the KEK handle still work."""
        try:
            self._keys[KEK_LABEL][A.CLASS]
        except Exception:
            raise _TokenLost() from None

    # ---- seal / unseal ---------------------------------------------------------------
    def _w_encrypt(self, key: Any, label: str, context: SealContext, plaintext: bytes) -> bytes:
        assert self._mech is not None
        return sealing.encrypt(self._mech, key, self._keys.get(MAC_LABEL), label, self.node_id,
                               context, plaintext)

    def _w_decrypt(self, key: Any, header: BlobHeader, ct: bytes, context: SealContext) -> bytes:
        assert self._mech is not None
        out = sealing.decrypt(self._mech, key, self._keys.get(MAC_LABEL), header, ct,
                              self.node_id, context, _DECRYPT_FAILURES)
        if out is not None:
            return out
        # SoftHSM 2.6 says CKR_GENERAL_ERROR for a bad tag; tell it from a lost token.
        self._w_probe()
        raise HSMIntegrityError(
            f"sealed {context.kind} failed authentication (tampered, or not sealed for "
            "this node, key, epoch or context)"
        )

    def _w_seal(self, context: SealContext, plaintext: bytes) -> bytes:
        if context.single_use:
            raise ValueError("presignatures and nonces are sealed with seal_presignature()")
        return self._w_encrypt(self._keys[KEK_LABEL], KEK_LABEL, context, plaintext)

    def _w_unseal(self, context: SealContext, blob: bytes) -> bytes:
        if context.single_use:
            raise ValueError("presignatures and nonces are unsealed with consume_presignature()")
        header, ct = _parse(blob)
        if header.label != KEK_LABEL:
            raise HSMIntegrityError("sealed blob names a key other than the node's KEK")
        return self._w_decrypt(self._keys[KEK_LABEL], header, ct, context)

    def _w_presig_key(self, label: str) -> Any | None:
        key = self._w_find(ObjectClass.SECRET_KEY, label)
        if key is None:
            self._w_probe()  # a vanished token also finds nothing
        return key

    def _w_seal_presig(self, context: SealContext, plaintext: bytes) -> bytes:
        if not context.single_use:
            raise ValueError("seal_presignature() needs a presignature or frost_nonce context")
        label = context.object_key_label()
        if self._w_presig_key(label) is not None:
            raise HSMKeyPolicyError(f"a key for this {context.kind} already exists")
        key = self._session.generate_key(
            KeyType.AES, 256, label=label, id=context.presig_id, store=True,
            template=aes_key_template(destroyable=True),
        )
        try:
            return self._w_encrypt(key, label, context, plaintext)
        except BaseException:
            try:
                key.destroy()
            except Exception:
                pass
            raise

    def _w_unseal_presig(self, context: SealContext, blob: bytes, destroy: bool) -> bytes:
        if not context.single_use:
            raise ValueError("a presignature or frost_nonce context is required")
        header, ct = _parse(blob)
        label = context.object_key_label()
        what = "presignature" if context.is_presignature else "nonce pair"
        if header.label != label:
            raise HSMIntegrityError(f"sealed {what} names another {what}'s key")
        key = self._w_presig_key(label)
        if key is None:
            raise HSMKeyNotFoundError(
                f"this {what}'s key is gone: it was spent or discarded"
            )
        try:
            check_policy(key, AES_POLICY, f"the {what} key")
            return self._w_decrypt(key, header, ct, context)
        finally:
            if destroy:
                key.destroy()

    def _w_destroy_presig(self, label: str) -> bool:
        if not single_use_label_prefix(label):
            raise ValueError("only presignature and nonce keys can be destroyed")
        key = self._w_presig_key(label)
        if key is None:
            return False
        key.destroy()
        return True

    def _w_presig_exists(self, label: str) -> bool:
        if not single_use_label_prefix(label):
            raise ValueError("not a presignature or nonce key label")
        return self._w_presig_key(label) is not None

    def _w_list_presig(self, prefix: str = PRESIG_LABEL_PREFIX) -> list[str]:
        out = []
        for obj in self._session.get_objects({A.CLASS: ObjectClass.SECRET_KEY}):
            label = obj.label
            if label.startswith(prefix):
                out.append(label)
        return sorted(out)

    # ---- identity / transport --------------------------------------------------------
    def _w_sign(self, digest: bytes) -> bytes:
        if len(digest) != 32:
            raise ValueError("the digest must be 32 bytes")
        sig = self._keys[IDENTITY_LABEL].sign(digest, mechanism=Mechanism.ECDSA)
        if len(sig) != 64:
            raise HSMError("the token returned a malformed ECDSA signature")
        n = _CURVE_ORDERS[self.config.identity_curve]
        r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
        if s > n // 2:
            s = n - s
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def _w_ecdh(self, eph_point: bytes) -> bytes:
        z_obj = self._keys[TRANSPORT_LABEL].derive_key(
            KeyType.GENERIC_SECRET, 256,
            capabilities=0,
            mechanism=Mechanism.ECDH1_DERIVE,
            mechanism_param=(pkcs11.KDF.NULL, None, eph_point),
            # SoftHSM 2.6: only CKD_NULL and no HKDF mechanism, so Z must be read out to
            # run HKDF in software (see hsm.transport). Session object, no capability.
            template={A.TOKEN: False, A.SENSITIVE: False, A.EXTRACTABLE: True,
                      A.PRIVATE: True, **NO_CAPS_SECRET},
        )
        try:
            return z_obj[A.VALUE]
        finally:
            z_obj.destroy()

    def _w_attrs(self, which: str, attributes: list) -> dict:
        names = {"kek": KEK_LABEL, "identity": IDENTITY_LABEL, "transport": TRANSPORT_LABEL,
                 "mac": MAC_LABEL}
        if which in names:
            key = self._keys[names[which]]
            if key is None:
                raise HSMKeyNotFoundError(f"token {self.config.token_label!r} has no {which} key")
        else:
            key = self._w_presig_key(which)
            if key is None:
                raise HSMKeyNotFoundError("no such presignature key")
        out: dict = {}
        for a in attributes:
            try:
                out[a] = key[a]
            except pkcs11.PKCS11Error as exc:
                if _is_lost(exc):
                    raise
                out[a] = exc
        return out
