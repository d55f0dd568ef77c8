"""The HSM with each PKCS#11 operation's duration (and failures) in the metrics; each failure
is also an ``hsm_failure`` log event."""

from __future__ import annotations

import time
from typing import Any, Awaitable, Callable

from appliance.logs import get_logger
from appliance.sealed import SealContext

log = get_logger("appliance.hsm")


def _failed(op: str, exc: BaseException) -> None:
    """One ``hsm_failure`` event: the operation and the error's type and code, never its
    arguments (a blob, a context) or a PIN."""
    log.warning("hsm_failure", operation=op, error=type(exc).__name__, code=getattr(exc, "code", None))


class MeteredHSM:
    """The HSM with each PKCS#11 operation's duration (and failures) in the metrics: the
    :class:`appliance.ports.Sealer` port of a node; anything else is the HSM's own."""

    def __init__(self, hsm, metrics) -> None:
        self._hsm = hsm
        self._metrics = metrics

    def __getattr__(self, name: str) -> Any:
        return getattr(self._hsm, name)  # public keys, close_async, ... (not timed)

    def _timed(self, op: str, fn: Callable[..., Any], *a: Any, **kw: Any) -> Any:
        t0, ok = time.perf_counter(), False
        try:
            out = fn(*a, **kw)
            ok = True
            return out
        except Exception as exc:
            _failed(op, exc)
            raise
        finally:
            self._metrics.observe_hsm(op, time.perf_counter() - t0, ok=ok)

    async def _timed_async(self, op: str, fn: Callable[..., Awaitable[Any]], *a: Any, **kw: Any) -> Any:
        t0, ok = time.perf_counter(), False
        try:
            out = await fn(*a, **kw)
            ok = True
            return out
        except Exception as exc:
            _failed(op, exc)
            raise
        finally:
            self._metrics.observe_hsm(op, time.perf_counter() - t0, ok=ok)

    async def seal_async(self, context: SealContext, plaintext: bytes) -> bytes:
        return await self._timed_async("seal", self._hsm.seal_async, context, plaintext)

    async def unseal_async(self, context: SealContext, blob: bytes) -> bytes:
        return await self._timed_async("unseal", self._hsm.unseal_async, context, blob)

    async def seal_presignature_async(self, context: SealContext, plaintext: bytes) -> bytes:
        return await self._timed_async("seal_presignature", self._hsm.seal_presignature_async, context, plaintext)

    async def unseal_presignature_async(self, context: SealContext, blob: bytes) -> bytes:
        return await self._timed_async("unseal_presignature", self._hsm.unseal_presignature_async, context, blob)

    async def consume_presignature_async(self, context: SealContext, blob: bytes) -> bytes:
        return await self._timed_async("consume_presignature", self._hsm.consume_presignature_async, context, blob)

    async def destroy_presignature_key_async(self, label: str) -> bool:
        return await self._timed_async("destroy_key", self._hsm.destroy_presignature_key_async, label)

    def destroy_presignature_key(self, label: str) -> bool:
        return self._timed("destroy_key", self._hsm.destroy_presignature_key, label)

    def sign_digest(self, digest: bytes) -> bytes:
        return self._timed("sign", self._hsm.sign_digest, digest)

    async def sign_digest_async(self, digest: bytes) -> bytes:
        return await self._timed_async("sign", self._hsm.sign_digest_async, digest)

    async def transport_decrypt_async(self, envelope: bytes, *, context: bytes = b"") -> bytes:
        return await self._timed_async("transport_decrypt", self._hsm.transport_decrypt_async, envelope,
                                       context=context)

    def health(self) -> bool:
        return self._timed("health", self._hsm.health)
