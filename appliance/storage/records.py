"""What the repositories hand out: records of keys, presignatures and sign requests, and
the small encodings they share."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from appliance.sealed import SealContext, canonical_signer_set, looks_sealed
from appliance.storage.errors import NotSealedError

SECRET_KINDS = ("share", "paillier", "ring_pedersen")
REQUEST_STATUSES = ("pending", "approved", "rejected", "signing", "signed", "failed", "expired")


@dataclass(frozen=True)
class KeyRecord:
    key_id: str
    threshold: int
    participants: tuple
    public_key: bytes
    chain_code: bytes
    epoch: int
    created_at: float


@dataclass(frozen=True)
class PresignatureRecord:
    """A presignature's public metadata (no blob)."""

    presig_id: bytes
    key_id: str
    epoch: int
    signer_set: tuple[int, ...]
    R: bytes
    hsm_key_label: str
    state: str
    created_at: float
    hsm_key_destroyed: bool


@dataclass(frozen=True)
class TakenPresignature:
    """A presignature durably marked spent, with what is needed to unseal it once."""

    presig_id: bytes
    key_id: str
    epoch: int
    signer_set: tuple[int, ...]
    R: bytes
    sealed: bytes
    hsm_key_label: str

    @property
    def context(self) -> SealContext:
        return SealContext.presignature(
            self.key_id, self.epoch, self.presig_id, self.R, self.signer_set
        )


@dataclass(frozen=True)
class Reservation:
    presig_id: bytes
    key_id: str
    epoch: int
    signer_set: tuple[int, ...]
    R: bytes
    request_id: str | None


@dataclass(frozen=True)
class SignRequest:
    request_id: str
    key_id: str
    initiator: str
    digest: bytes | None
    derivation_path: str | None
    payload: bytes | None
    payload_type: str | None
    request: bytes | None
    status: str
    result: bytes | None
    error: str | None
    presig_id: bytes | None
    created_at: float
    updated_at: float


def signer_set_text(signer_set: Iterable[int]) -> str:
    return ",".join(str(i) for i in canonical_signer_set(signer_set))


def parse_signer_set(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(","))


def key_epochs_where(key_id: str, before_epoch: int | None) -> tuple[str, list]:
    """The SQL condition (and its arguments) for a key's rows: all, or those of epochs before
    ``before_epoch``."""
    if before_epoch is None:
        return "key_id = ?", [key_id]
    return "key_id = ? AND epoch < ?", [key_id, before_epoch]


def require_sealed(value: Any, what: str) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)) or not looks_sealed(bytes(value)):
        raise NotSealedError(f"{what} must be a sealed blob (hsm.HSM.seal), not raw bytes")
    return bytes(value)
