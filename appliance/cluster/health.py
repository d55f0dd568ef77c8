"""Which peers answer (asked over pinned mutual TLS, cached briefly), and whether this node's
own HSM does: without it the node neither signs nor coordinates (fail closed)."""

from __future__ import annotations

import asyncio
import time

from appliance.errors import ServiceError
from appliance.ids import peer_path
from appliance.ports import Late, PeerLink, Sealer
from appliance.runtime import Runtime
from appliance.transport import PeerError


class PeerHealth:
    def __init__(self, rt: Runtime, peers: PeerLink, hsm: Late[Sealer]) -> None:
        self.rt = rt
        self.link = peers
        self.hsm = hsm
        self._seen: dict[int, tuple[float, bool]] = {}

    async def peer_healthy(self, index: int, *, max_age: float = 2.0, since: float | None = None) -> bool:
        """``since`` (a ``time.monotonic()`` reading): a readiness the peer gave at or after it
        (:meth:`note`) stands for asking it now."""
        rt = self.rt
        if index == rt.index:
            return True
        now = time.monotonic()
        cached = self._seen.get(index)
        if cached and cached[1] and (now - cached[0] < max_age or (since is not None and cached[0] >= since)):
            return True
        try:
            body = await self.link.request(rt.peers[index], "GET", peer_path("health"), timeout=2.0)
            ok = bool(body.get("ready"))
        except PeerError:
            ok = False
        self._seen[index] = (time.monotonic(), ok)
        rt.metrics.set_peer_up(rt.peers[index].id, ok)
        return ok

    async def split_healthy(self, indices, *, max_age: float = 0.0,
                            since: float | None = None) -> tuple[list[int], list[int]]:
        """(reachable, unreachable) among ``indices``; asks each peer now unless it answered
        within ``max_age`` seconds, or said it was ready at or after ``since`` (client requests
        ask now, or take the readiness each peer gave with its answer to this very request's
        claim: a refused request changes nothing, so a stopped node must be found before
        anything is created)."""
        indices = sorted(indices)
        oks = await asyncio.gather(*(self.peer_healthy(i, max_age=max_age, since=since) for i in indices))
        return ([i for i, ok in zip(indices, oks) if ok], [i for i, ok in zip(indices, oks) if not ok])

    def note(self, index: int, ready: bool) -> None:
        """Peer ``index`` just answered with its readiness (``ready``: as ``GET /v1/peer/health``
        gives it, node ready and HSM answering) along with another request (a claim)."""
        if index == self.rt.index:
            return
        self._seen[index] = (time.monotonic(), ready)
        self.rt.metrics.set_peer_up(self.rt.peers[index].id, ready)

    def mark_unhealthy(self, index: int) -> None:
        self._seen[index] = (time.monotonic(), False)
        self.rt.metrics.set_peer_up(self.rt.peers[index].id, False)

    async def hsm_healthy(self) -> bool:
        hsm = self.hsm.value
        if hsm is None:
            return False
        try:
            return bool(await asyncio.get_running_loop().run_in_executor(None, hsm.health))
        except Exception:
            return False

    async def require_hsm(self) -> None:
        """Fail closed: without a working HSM this node neither signs nor coordinates."""
        rt = self.rt
        if not rt.ready or not await self.hsm_healthy():
            raise ServiceError("hsm_unavailable",
                               f"{rt.me.id}: the HSM is not available ({rt.fault or 'token not answering'}); "
                               "nothing is signed")
