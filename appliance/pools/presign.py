"""The presignature pool: for every active key and every signer set it leads (its lowest
index), this node keeps ``presign_pool`` presignatures ready, made while signing is quiet.
Each presignature is sealed under its own HSM key, destroyed when it is spent."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Callable

from appliance.cluster.health import PeerHealth
from appliance.cluster.quarantine import QuarantineService
from appliance.ids import new_id
from appliance.jobs.model import JobFailed, is_frost
from appliance.pools.refill import refill_loop
from appliance.ports import KeyStore, Late, PresignatureStore, Sealer
from appliance.runtime import Runtime

log = logging.getLogger("appliance.node")


class PresignPool:
    def __init__(self, rt: Runtime, health: PeerHealth, quarantine: QuarantineService,
                 coordinate: Callable, signing_now: Callable[[], bool],
                 key_change_running: Callable[[str], bool], *, key_store: Late[KeyStore],
                 presigs: Late[PresignatureStore], hsm: Late[Sealer]) -> None:
        self.rt = rt
        self.key_store = key_store
        self.presigs = presigs
        self.hsm = hsm
        self.health = health
        self.quarantine = quarantine
        self.coordinate = coordinate  # Coordinator.run
        self.signing_now = signing_now  # a sign job runs here
        self.key_change_running = key_change_running
        self.wakeup = asyncio.Event()
        self.last_sign = 0.0
        self._running: set[tuple] = set()

    def signed(self) -> None:
        """A sign job started here: refills wait until signing has been quiet."""
        self.last_sign = time.monotonic()

    async def loop(self) -> None:
        await refill_loop(self.rt, "presign pool", self.rt.config.presign_pool, self.wakeup,
                          lambda: self.last_sign, self.signing_now, self._round)

    async def _round(self, target: int) -> bool:
        """One presign job for the first signer set short of ``target``; True if one ran."""
        rt = self.rt
        for row in self.key_store().list_keys("active"):
            if rt.index not in row["participants"] or row["paillier_bits"] == 0 or is_frost(row):
                # a FROST key (schnorr-bip340, ed25519) signs with nonces made in its sign job
                continue
            t = row["threshold"]
            for s in itertools.combinations(sorted(row["participants"]), t):
                if min(s) != rt.index:
                    continue  # the lowest index of a signer set fills its pool
                if len(self.quarantine.not_quarantined(s)) != len(s):
                    continue
                if self.key_change_running(row["key_id"]):
                    continue  # a refresh/reshare is about to replace this epoch
                have = self.presigs().count_presignatures(row["key_id"], list(s), epoch=row["epoch"])
                tag = (row["key_id"], s)
                if have >= target or tag in self._running:
                    continue
                healthy, missing = await self.health.split_healthy(s, max_age=5.0)
                if missing:
                    continue
                self._running.add(tag)
                try:
                    spec = {"job_id": new_id("job_id"), "kind": "presign", "key_id": row["key_id"],
                            "parties": list(s), "epoch": row["epoch"], "coordinator": rt.index}
                    await self.coordinate(spec)
                except JobFailed as exc:
                    log.info("presign for %s failed: %s", s, exc.error.message)
                finally:
                    self._running.discard(tag)
                return True  # one at a time: signing requests come first
        self.report()
        return False

    def report(self) -> None:
        """The presignatures gauge: presignatures available on this node at each key's current
        epoch (every signer set it belongs to), updated as they are made, spent or discarded."""
        rt = self.rt
        if self.presigs.value is None:
            return
        try:
            counts = {row["key_id"]: self.presigs().count_presignatures(row["key_id"], epoch=row["epoch"])
                      for row in self.key_store().list_keys("active")}
        except Exception:  # pragma: no cover - a metric never breaks a job
            return
        rt.metrics.set_presignature_counts(counts)

    def counts(self, key_id: str) -> dict[str, int]:
        rt = self.rt
        if self.key_store().get_key(key_id) is None:
            return {}
        return {",".join(rt.node_ids(s)): n for s, n in self.presigs().ready_signer_sets(key_id).items()}

    def changed(self) -> None:
        """Keys or presignatures changed: report, and let the loop look again."""
        self.wakeup.set()
        self.report()

    async def destroy_keys(self, labels: list[str]) -> None:
        """Destroy spent presignatures' HSM keys (those that fail are retried at the next start)."""
        done = []
        for label in labels:
            try:
                await self.hsm().destroy_presignature_key_async(label)
                done.append(label)
            except Exception:  # retried at the next start-up
                log.info("could not destroy presignature key %s", label)
        self.presigs().presignature_keys_destroyed(done)

    async def mark_destroyed(self, labels: list[str]) -> None:
        self.presigs().presignature_keys_destroyed(labels)
