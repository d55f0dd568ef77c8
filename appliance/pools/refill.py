"""The background refill loop the pools share (presignatures, FROST nonce pairs): wait for a
wake-up (or 2 s), hold off while signing is busy or has not been quiet ``PRESIGN_QUIET_S``,
then run one refill round; a round that made something is followed at once by another, an
error is logged and retried after a second."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable

from appliance.runtime import Runtime

log = logging.getLogger("appliance.node")

PRESIGN_QUIET_S = 0.5  # pool refills wait until signing has been quiet this long


async def refill_loop(rt: Runtime, name: str, target: int, wakeup: asyncio.Event,
                      last_sign: Callable[[], float], signing_now: Callable[[], bool],
                      round_: Callable[[int], Awaitable[bool]]) -> None:
    """Run ``round_(target)`` whenever signing is quiet until the node stops; ``round_``
    returns True when it made something (look again at once). ``target <= 0``: no pool."""
    if target <= 0:
        return
    while not rt.stopping:
        try:
            await asyncio.wait_for(wakeup.wait(), 2.0)
        except asyncio.TimeoutError:
            pass
        wakeup.clear()
        quiet = PRESIGN_QUIET_S - (time.monotonic() - last_sign())
        if quiet > 0 or signing_now():
            await asyncio.sleep(max(quiet, 0.05))
            wakeup.set()
            continue
        try:
            if await round_(target):
                wakeup.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.info("%s: %s", name, exc)
            await asyncio.sleep(1.0)


__all__ = ["PRESIGN_QUIET_S", "refill_loop"]
