"""Start-up housekeeping of presignature keys: the store lists what is owed, the HSM
destroys it, the store records that. The store never drives the HSM itself."""

from __future__ import annotations

from typing import Protocol

from appliance.storage import Store


class PresignatureKeyDestroyer(Protocol):
    """What this needs of the HSM (:class:`hsm.HSM` is one)."""

    def destroy_presignature_key(self, label: str) -> bool:
        """Destroy the key labelled ``label``; False if it is already gone."""
        ...


def destroy_spent_presignature_keys(store: Store, hsm: PresignatureKeyDestroyer) -> int:
    """Burn reservations left by a dead process, then destroy the HSM keys of spent
    presignatures and spent (or discarded) FROST nonce pairs whose destruction was not
    recorded. Returns the number of labels handled."""
    store.burn_stale_reservations()
    labels = store.presignature_keys_to_destroy()
    nonce_labels = store.frost_nonce_keys_to_destroy()
    for label in labels + nonce_labels:
        hsm.destroy_presignature_key(label)  # False if already gone: fine
    store.mark_presignature_keys_destroyed(labels)
    store.mark_frost_nonce_keys_destroyed(nonce_labels)
    return len(labels) + len(nonce_labels)
