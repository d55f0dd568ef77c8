"""Primes for aux-info: a sealed pool of safe primes that each node fills in the background
(made in a niced worker process), or the test-only prime file the configuration names."""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from appliance.errors import ApplianceError
from appliance.ports import Late, PrimeStore, Sealer
from appliance.runtime import Runtime
from appliance.sealed import SealContext
from appliance.tss.primes import PrimePool, random_blum_prime, random_safe_prime

log = logging.getLogger("appliance.node")


class FixedPrimes:
    """Primes reserved for one aux-info run (taken from the pool beforehand, off the loop)."""

    def __init__(self, blum: list[int], safe: list[int]) -> None:
        self._blum, self._safe = list(blum), list(safe)

    def blum_prime(self, bits: int) -> int:
        if self._blum:
            return self._blum.pop()
        return random_blum_prime(bits)

    def safe_prime(self, bits: int) -> int:
        if self._safe:
            return self._safe.pop()
        return random_safe_prime(bits)


def _prime_ctx(half: int) -> SealContext:
    return SealContext("prime", key_id=f"safe-{half}")


class PrimeSupply:
    def __init__(self, rt: Runtime, *, primes: Late[PrimeStore], hsm: Late[Sealer]) -> None:
        self.rt = rt
        self.prime_store = primes
        self.hsm = hsm
        self.test_primes: PrimePool | None = None
        self._filling = False

    def start(self) -> None:
        if self.rt.config.prime_file is not None:
            # test-only primes: read only because the configuration names the file
            self.test_primes = PrimePool.from_file(self.rt.config.prime_file)
        else:
            self.rt.spawn(self.fill())

    async def take(self, bits: int, progress: Callable[[int, int, str | None], None] | None = None) -> FixedPrimes:
        """Two Blum and two safe primes of bits/2 bits: from the test-only pool (when the
        configuration names one), else safe primes from the sealed pool; Blum primes (cheap)
        and missing safe primes are made fresh in a worker process. ``progress(done, 4,
        detail)``: called as each of the four is in hand (a Blum prime left for the aux-info
        worker counts as in hand) and before a safe prime is generated here."""
        rt = self.rt
        half = bits // 2
        out: dict[str, list[int]] = {"blum": [], "safe": []}
        report = progress or (lambda done, total, detail: None)
        got = 0
        report(got, 4, None)
        for kind in ("blum", "safe"):
            for _ in range(2):
                p = None
                if self.test_primes is not None:
                    try:
                        p = (self.test_primes.blum_prime(half) if kind == "blum"
                             else self.test_primes.safe_prime(half))
                    except ApplianceError:
                        p = None
                if p is None and kind == "safe":
                    item = self.prime_store().take_prime(half)
                    if item is not None:
                        p = int.from_bytes(await self.hsm().unseal_async(_prime_ctx(half), item[1]), "big")
                if p is None and kind == "blum":
                    got += 1
                    report(got, 4, None)
                    continue  # cheap: FixedPrimes makes it in the aux worker thread
                if p is None:
                    report(got, 4, f"the pool is empty: generating a {half}-bit safe prime")
                    p = await asyncio.get_running_loop().run_in_executor(rt.procs, random_safe_prime, half)
                out[kind].append(p)
                got += 1
                report(got, 4, None)
        if self.test_primes is None:
            rt.spawn(self.fill())
        return FixedPrimes(out["blum"], out["safe"])

    async def fill(self) -> None:
        """Keep ``pool_target`` sealed safe primes ready (made in a niced worker process)."""
        rt = self.rt
        if self._filling or self.test_primes is not None:
            return
        self._filling = True
        try:
            half = rt.config.paillier_bits // 2
            loop = asyncio.get_running_loop()
            while not rt.stopping and self.prime_store().count_primes(half) < rt.config.prime_pool_target:
                p = await loop.run_in_executor(rt.procs, random_safe_prime, half)
                blob = await self.hsm().seal_async(_prime_ctx(half), int(p).to_bytes((half + 7) // 8, "big"))
                self.prime_store().add_prime(half, blob)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # pragma: no cover - logged, retried on next use
            log.warning("prime pool filling stopped: %s", exc)
        finally:
            self._filling = False

    def counts(self) -> dict:
        rt = self.rt
        half = rt.config.paillier_bits // 2
        if self.test_primes is not None:
            c = self.test_primes.counts()
            return {"source": "test-only file", "safe": c["safe"].get(half, 0), "blum": c["blum"].get(half, 0)}
        n = self.prime_store().count_primes(half)
        return {"source": "sealed pool", "safe": n, "blum": n}
