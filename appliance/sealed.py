"""Sealed-blob format and the associated data (AAD) that binds a blob to its place.

Pure Python, no PKCS#11: the store uses it to refuse values that are not sealed and the HSM
layer (:mod:`hsm`) to build and parse the blobs it seals, so neither imports the other.

The first byte names the version and with it the mechanism that sealed the blob (the HSM
layer picks the mechanism the token offers at start, :mod:`hsm.sealing`); every version
stays readable.

Blob, version 1: AES-256-GCM (all lengths in bytes)::

    version      1   0x01
    label_len    1   length of the sealing key's label (1..128)
    label        n   ASCII label of the HSM key that sealed it (the node's KEK, or the
                     presignature's own key "appliance/presig/<hex id>")
    nonce       12   fresh random 96-bit GCM nonce
    ciphertext   *   AES-256-GCM ciphertext
    tag         16   GCM tag

Blob, version 2: AES-256-CBC-PAD, then HMAC-SHA256 (encrypt-then-MAC), for tokens without
CKM_AES_GCM::

    version      1   0x02
    label_len    1   as version 1
    label        n   as version 1 (the AES key that encrypted it)
    iv          16   fresh random CBC IV
    ciphertext   *   AES-256-CBC ciphertext with PKCS#7 padding (a multiple of 16, >= 16)
    mac         32   HMAC-SHA256 under the node's MAC key (``appliance/mac``, an HSM key)
                     over :func:`mac_input`: the AAD below || len-prefixed IV ||
                     len-prefixed ciphertext; checked (C_Verify, inside the HSM) before
                     anything is decrypted

AAD = "threshold-appliance/seal/v1" || header (version, label_len, label) || the
context fields, each length-prefixed (4-byte big-endian length): node id, kind, key id,
epoch (8 bytes), presignature id, R, signer set (each index 4 bytes, sorted). So flipping
any header byte, or unsealing under a different node / key / epoch / kind / presignature
id / R / signer set, fails the tag check. A pooled FROST nonce pair (kind ``frost_nonce``,
sealed under its own key "appliance/nonce/<hex id>") puts its nonce id, its commitments
D||E and its owner's index in those three places.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from appliance.errors import EncodingError

BLOB_VERSION = 1  # AES-256-GCM
BLOB_VERSION_CBC_HMAC = 2  # AES-256-CBC-PAD + HMAC-SHA256
BLOB_VERSIONS = (BLOB_VERSION, BLOB_VERSION_CBC_HMAC)
NONCE_LEN = 12
TAG_LEN = 16
IV_LEN = 16
MAC_LEN = 32
_NONCE_LENS = {BLOB_VERSION: NONCE_LEN, BLOB_VERSION_CBC_HMAC: IV_LEN}
_MIN_BODY = {BLOB_VERSION: TAG_LEN, BLOB_VERSION_CBC_HMAC: 16 + MAC_LEN}
MAX_LABEL_LEN = 128
AAD_DOMAIN = b"threshold-appliance/seal/v1"

KEK_LABEL = "appliance/kek"
MAC_LABEL = "appliance/mac"  # HMAC key of version-2 blobs (only on tokens that need it)
IDENTITY_LABEL = "appliance/identity"
TRANSPORT_LABEL = "appliance/transport"
PRESIG_LABEL_PREFIX = "appliance/presig/"
NONCE_LABEL_PREFIX = "appliance/nonce/"  # a pooled FROST nonce pair's own key

PRESIGNATURE = "presignature"
FROST_NONCE = "frost_nonce"
#: kinds sealed under a key object of their own, destroyed when the value is spent
SINGLE_USE_KINDS = {PRESIGNATURE: PRESIG_LABEL_PREFIX, FROST_NONCE: NONCE_LABEL_PREFIX}
# Kinds of sealed values (free-form, but these are the ones the appliance uses).
KINDS = frozenset(
    {"share", "paillier", "ring_pedersen", "prime", "presignature", "frost_nonce", "aux", "generic"}
)


class MalformedBlob(EncodingError):
    """A value is not a well-formed sealed blob of a known version (the HSM layer reports
    it as a failed authentication, :class:`hsm.errors.HSMIntegrityError`)."""

    code = "malformed_blob"


def presig_key_label(presig_id: bytes) -> str:
    """The label of the per-presignature HSM key (deterministic in the id)."""
    if not isinstance(presig_id, (bytes, bytearray)) or not 1 <= len(presig_id) <= 32:
        raise ValueError("a presignature id is 1..32 bytes")
    return PRESIG_LABEL_PREFIX + bytes(presig_id).hex()


def nonce_key_label(nonce_id: bytes) -> str:
    """The label of a pooled FROST nonce pair's own HSM key (deterministic in its id)."""
    if not isinstance(nonce_id, (bytes, bytearray)) or not 1 <= len(nonce_id) <= 32:
        raise ValueError("a nonce id is 1..32 bytes")
    return NONCE_LABEL_PREFIX + bytes(nonce_id).hex()


def single_use_label_prefix(label: str) -> bool:
    """Does ``label`` name a single-use key (a presignature's or a nonce pair's)?"""
    return any(label.startswith(p) for p in SINGLE_USE_KINDS.values())


def _lp(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def canonical_signer_set(signers) -> tuple[int, ...]:
    items = [int(i) for i in signers]
    s = tuple(sorted(set(items)))
    if not s or any(i < 0 or i >= 2**32 for i in s):
        raise ValueError("a signer set is a non-empty set of indices in [0, 2^32)")
    if len(s) != len(items):
        raise ValueError("a signer set must not repeat an index")
    return s


@dataclass(frozen=True)
class SealContext:
    """Where a sealed value belongs. Everything here is authenticated, nothing secret.

    For ``kind == "presignature"`` the presignature id, its R (compressed point) and the
    signer set are required; for ``kind == "frost_nonce"`` (a pooled FROST nonce pair,
    :meth:`frost_nonce`) the same three fields hold the nonce id, its commitments D||E and
    the owner's index; for every other kind they must be absent. Both are *single-use*:
    sealed under a key object of their own (:meth:`object_key_label`), destroyed on spend.
    """

    kind: str
    key_id: str = ""
    epoch: int = 0
    presig_id: bytes | None = None
    R: bytes | None = None
    signer_set: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not self.kind or not self.kind.isascii() or len(self.kind) > 32:
            raise ValueError("kind must be a short ASCII name")
        if not 0 <= int(self.epoch) < 2**63:
            raise ValueError("epoch out of range")
        presig_fields = (self.presig_id, self.R, self.signer_set)
        if self.kind in SINGLE_USE_KINDS:
            if any(f is None for f in presig_fields):
                raise ValueError(f"a {self.kind} context needs its id, R/commitments and signer set")
            self.object_key_label()  # validates the id
            object.__setattr__(self, "signer_set", canonical_signer_set(self.signer_set))
            object.__setattr__(self, "presig_id", bytes(self.presig_id))
            object.__setattr__(self, "R", bytes(self.R))
        elif any(f is not None for f in presig_fields):
            raise ValueError("presig_id, R and signer_set belong to single-use contexts only")

    @classmethod
    def presignature(
        cls, key_id: str, epoch: int, presig_id: bytes, R: bytes, signer_set
    ) -> "SealContext":
        return cls(PRESIGNATURE, key_id, epoch, bytes(presig_id), bytes(R), tuple(signer_set))

    @classmethod
    def frost_nonce(cls, key_id: str, epoch: int, nonce_id: bytes, commitments: bytes,
                    index: int) -> "SealContext":
        """A pooled FROST nonce pair of party ``index`` for (key, epoch), bound to its id and
        its commitments (D||E, as published)."""
        return cls(FROST_NONCE, key_id, epoch, bytes(nonce_id), bytes(commitments), (int(index),))

    @property
    def is_presignature(self) -> bool:
        return self.kind == PRESIGNATURE

    @property
    def single_use(self) -> bool:
        """Sealed under a key object of its own (a presignature, a FROST nonce pair)."""
        return self.kind in SINGLE_USE_KINDS

    def object_key_label(self) -> str:
        """The label of this single-use value's own HSM key."""
        if self.kind == FROST_NONCE:
            return nonce_key_label(self.presig_id)
        if self.kind == PRESIGNATURE:
            return presig_key_label(self.presig_id)
        raise ValueError(f"a {self.kind} is sealed under the node's KEK, not a key of its own")

    def fields(self, node_id: str) -> bytes:
        out = [
            _lp(node_id.encode()),
            _lp(self.kind.encode()),
            _lp(self.key_id.encode()),
            struct.pack(">Q", self.epoch),
        ]
        if self.single_use:
            out += [
                _lp(self.presig_id),
                _lp(self.R),
                _lp(b"".join(struct.pack(">I", i) for i in self.signer_set)),
            ]
        return b"".join(out)


@dataclass(frozen=True)
class BlobHeader:
    version: int
    label: str
    nonce: bytes

    def encode(self) -> bytes:
        lb = self.label.encode("ascii")
        return bytes([self.version, len(lb)]) + lb

    def aad(self, node_id: str, context: SealContext) -> bytes:
        return _lp(AAD_DOMAIN) + _lp(self.encode()) + context.fields(node_id)


def mac_input(header: BlobHeader, node_id: str, context: SealContext, ciphertext: bytes) -> bytes:
    """What the HMAC of a version-2 blob covers: the AAD (domain, header, context) and the
    IV and ciphertext, each length-prefixed."""
    return header.aad(node_id, context) + _lp(header.nonce) + _lp(ciphertext)


def build_blob(label: str, nonce: bytes, body: bytes, version: int = BLOB_VERSION) -> bytes:
    """``body``: ciphertext||tag (version 1) or ciphertext||mac (version 2)."""
    if version not in BLOB_VERSIONS:
        raise ValueError("unknown blob version")
    if not 1 <= len(label) <= MAX_LABEL_LEN or len(nonce) != _NONCE_LENS[version]:
        raise ValueError("bad label or nonce length")
    h = BlobHeader(version, label, nonce)
    return h.encode() + nonce + body


def parse_blob(blob: bytes) -> tuple[BlobHeader, bytes]:
    """Split a blob into header and body (ciphertext||tag, or ciphertext||mac for version
    2); :class:`MalformedBlob` if it is not a well-formed blob of a known version."""
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise MalformedBlob("a sealed blob must be bytes")
    b = bytes(blob)
    if len(b) < 2 or b[0] not in BLOB_VERSIONS:
        raise MalformedBlob("not a sealed blob of a known version")
    n, nonce_len = b[1], _NONCE_LENS[b[0]]
    if not 1 <= n <= MAX_LABEL_LEN or len(b) < 2 + n + nonce_len + _MIN_BODY[b[0]]:
        raise MalformedBlob("sealed blob is truncated or malformed")
    if b[0] == BLOB_VERSION_CBC_HMAC and (len(b) - 2 - n - nonce_len - MAC_LEN) % 16:
        raise MalformedBlob("sealed blob is truncated or malformed")
    try:
        label = b[2 : 2 + n].decode("ascii")
    except UnicodeDecodeError:
        raise MalformedBlob("sealed blob is malformed") from None
    if not label.isprintable():
        raise MalformedBlob("sealed blob is malformed")
    nonce = b[2 + n : 2 + n + nonce_len]
    return BlobHeader(b[0], label, nonce), b[2 + n + nonce_len :]


def looks_sealed(value: bytes) -> bool:
    """True if ``value`` parses as a sealed blob (a cheap guard, not a proof)."""
    try:
        parse_blob(value)
    except MalformedBlob:
        return False
    return True
