"""Catching up after a node was down: the signed updates each peer has applied (policy updates,
TLS certificate updates), asked for one peer at a time; the caller verifies each one as if it
had been posted to it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from appliance.ports import PeerLink


async def updates_from_peers(rt: Any, link: PeerLink, path: Any) -> AsyncIterator[tuple[int, list]]:
    """``(peer index, its updates)`` for each peer that answers ``GET path`` with
    ``{"updates": [...]}``; a peer that is down (or no longer pinned) is passed over."""
    for p in [p for p in rt.peers if p != rt.index]:
        try:
            body = await link.request(rt.peers[p], "GET", path, timeout=5.0)
        except Exception:  # noqa: BLE001 - a peer that is down has nothing to give
            continue
        updates = body.get("updates") if isinstance(body, dict) else None
        yield p, updates if isinstance(updates, list) else []
