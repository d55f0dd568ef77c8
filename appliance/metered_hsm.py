"""The HSM with each PKCS#11 operation's duration (and failures) in the metrics."""

from __future__ import annotations

import asyncio
import time
from typing import Any


class MeteredHSM:
    """The HSM with each PKCS#11 operation's duration (and failures) in the metrics."""

    OPS = {"seal_async": "seal", "unseal_async": "unseal", "seal_presignature_async": "seal_presignature",
           "unseal_presignature_async": "unseal_presignature",
           "consume_presignature_async": "consume_presignature",
           "destroy_presignature_key_async": "destroy_key", "destroy_presignature_key": "destroy_key",
           "sign_digest": "sign", "sign_digest_async": "sign",
           "transport_decrypt_async": "transport_decrypt", "health": "health"}

    def __init__(self, hsm, metrics) -> None:
        self._hsm = hsm
        self._metrics = metrics

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._hsm, name)
        op = self.OPS.get(name)
        if op is None or not callable(attr):
            return attr
        m = self._metrics
        if asyncio.iscoroutinefunction(attr):
            async def timed_async(*a: Any, **kw: Any) -> Any:
                t0, ok = time.perf_counter(), False
                try:
                    out = await attr(*a, **kw)
                    ok = True
                    return out
                finally:
                    m.observe_hsm(op, time.perf_counter() - t0, ok=ok)
            return timed_async

        def timed(*a: Any, **kw: Any) -> Any:
            t0, ok = time.perf_counter(), False
            try:
                out = attr(*a, **kw)
                ok = True
                return out
            finally:
                m.observe_hsm(op, time.perf_counter() - t0, ok=ok)
        return timed
