"""This node's key shares: sealed by the HSM in the store, unsealed on use and kept decoded in
memory for ``SHARE_CACHE_S`` seconds (never written anywhere)."""

from __future__ import annotations

import time

from appliance import formats
from appliance.errors import ServiceError
from appliance.keys import frost_keys
from appliance.policy import ECDSA
from appliance.ports import KeyStore, Late, Sealer
from appliance.runtime import Runtime
from appliance.sealed import SealContext
from appliance.tss.frost.keyshare import FrostKeyShare
from appliance.tss.keyshare import KeyShare

SHARE_CACHE_S = 300.0
VISIBLE = ("active", "disabled", "deleting", "deleted")


def refuse_unusable(row: dict | None, code: str, message: str) -> None:
    """Raise unless the key is active: ``key_disabled`` for a disabled key, ``key_deleted``
    for one deleting or deleted, else ``code``."""
    status = row["status"] if row is not None else None
    if status == "active":
        return
    if status == "disabled":
        raise ServiceError("key_disabled", "the key is disabled (enable it to sign)")
    if status in ("deleting", "deleted"):
        raise ServiceError("key_deleted", f"the key is {status}")
    raise ServiceError(code, message)


class ShareVault:
    def __init__(self, rt: Runtime, *, key_store: Late[KeyStore], hsm: Late[Sealer]) -> None:
        self.rt = rt
        self.key_store = key_store
        self.hsm = hsm
        self._cache: dict[tuple[str, int], tuple[float, KeyShare]] = {}

    def active_key(self, key_id: str) -> dict:
        """The key's row if it is in use here; a disabled or deleted key is refused with its
        own code (:func:`refuse_unusable`)."""
        row = self.key_store().get_key(key_id)
        refuse_unusable(row, "not_found", "unknown key")
        return row

    def known_key(self, key_id: str) -> dict:
        """The key's row in any status a client may see (active, disabled, deleting, deleted)."""
        row = self.key_store().get_key(key_id)
        if row is None or row["status"] not in VISIBLE:
            raise ServiceError("not_found", "unknown key")
        return row

    def key_view(self, row: dict) -> dict:
        """A key as clients see it: ``public_key`` (compressed SEC1 hex) and its other
        encodings and addresses (:func:`appliance.formats.public_key_formats`, on the key
        rule's Bitcoin network)."""
        out = {
            "key_id": row["key_id"],
            "public_key": row["public_key"].hex() if row["public_key"] else None,
            "threshold": row["threshold"],
            "nodes": self.rt.node_ids(row["participants"]),
            "epoch": row["epoch"],
            "paillier_bits": row["paillier_bits"],
            "status": row["status"],
            "created": row["created"],
        }
        scheme = row.get("scheme", ECDSA)
        if scheme != ECDSA:  # FROST: the key as its chain shows it (appliance/keys/frost_keys.py)
            if row["public_key"]:
                out.update(frost_keys.key_fields(scheme, row["public_key"],
                                                 self.rt.policy.rule_for(row["key_id"]).network))
            return out
        if row["public_key"]:
            out.update(self.key_formats(row["key_id"], row["public_key"]))
        return out

    def key_formats(self, key_id: str, public_key: bytes) -> dict:
        return formats.public_key_formats(public_key, self.rt.policy.rule_for(key_id).network)

    async def load(self, row: dict) -> KeyShare | FrostKeyShare:
        """The key's share at its current epoch, unsealed by the HSM (a FrostKeyShare for a
        schnorr-bip340 or ed25519 key)."""
        rt = self.rt
        ck = (row["key_id"], row["epoch"])
        hit = self._cache.get(ck)
        if hit is not None and time.monotonic() - hit[0] < SHARE_CACHE_S:
            return hit[1]
        ctx = SealContext("share", key_id=row["key_id"], epoch=row["epoch"])
        data = await self.hsm().unseal_async(ctx, self.key_store().share_blob(row["key_id"], row["epoch"]))
        decode = FrostKeyShare.from_bytes if row.get("scheme", ECDSA) != ECDSA else KeyShare.from_bytes
        share = await rt.cpu_call(decode, data, fast=True)  # on the sign path: never behind a protocol step
        if getattr(share, "scheme", ECDSA) != row.get("scheme", ECDSA):
            raise ServiceError("sealed_data_corrupt", "the key's share is of another scheme than its record")
        del data
        self.forget(row["key_id"])
        self._cache[ck] = (time.monotonic(), share)
        return share

    async def seal(self, key_id: str, share: KeyShare | FrostKeyShare) -> bytes:
        return await self.hsm().seal_async(SealContext("share", key_id=key_id, epoch=share.epoch),
                                           share.to_bytes())

    def forget(self, key_id: str, *, below_epoch: int | None = None) -> None:
        """Drop the decoded shares of ``key_id`` (only those of epochs below ``below_epoch``)."""
        self._cache = {k: v for k, v in self._cache.items()
                       if not (k[0] == key_id and (below_epoch is None or k[1] < below_epoch))}

    def check_holder_job(self, spec: dict) -> dict:
        """A presign or sign job of a key: this node holds it at the job's epoch, and every
        party does. Returns the key's row."""
        row = self.key_store().get_key(str(spec["key_id"]))
        refuse_unusable(row, "unknown_key", "this node does not hold that key")
        if int(spec.get("epoch", -1)) != row["epoch"]:
            raise ServiceError("epoch_mismatch", "the key's epoch differs on this node")
        if not set(int(p) for p in spec["parties"]) <= set(row["participants"]):
            raise ServiceError("bad_job", "parties do not hold the key")
        return row
