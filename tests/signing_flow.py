"""Signing as a user does it, whatever the policy asks: request, approve, wait.

Signing may need an approval (the policy: the initiator requests, a user with the approver
role approves, then the nodes sign). Until a policy asks for one, approving is refused with
409 (nothing waits for an approval) — :func:`sign` tolerates that, so tests written against
it hold before and after approvals exist.
"""

from __future__ import annotations

import time
from typing import Any

from api.client import ApplianceAPIError

NOTHING_TO_APPROVE = {"not_pending_approval", "already_approved", "already_decided", "not_pending",
                      "already_signed", "wrong_state"}


async def approve_if_needed(approver, request: dict) -> None:
    if approver is None or request.get("status") in ("signed", "failed"):
        return
    try:
        await approver.approve(request["request_id"])
    except ApplianceAPIError as exc:
        if exc.status == 409 or exc.code in NOTHING_TO_APPROVE:
            return  # nothing waits for an approval (no policy step yet, or already enough)
        raise


async def sign(initiator, approver, key_id: str, digest: bytes, *, timeout: float = 120.0,
               **kw: Any) -> dict:
    """request_signature -> approve (by ``approver``; a no-op while nothing needs one) ->
    wait_signature. Returns the signed request; raises ApplianceAPIError if it failed."""
    req = await initiator.request_signature(key_id, digest, **kw)
    await approve_if_needed(approver, req)
    return await initiator.wait_signature(req["request_id"], timeout=timeout)


async def timed_sign(initiator, approver, key_id: str, digest: bytes, **kw: Any) -> tuple[dict, float]:
    t0 = time.perf_counter()
    done = await sign(initiator, approver, key_id, digest, **kw)
    return done, time.perf_counter() - t0


def percentiles(values: list[float], qs=(0.5, 0.95, 0.99)) -> dict[str, float]:
    v = sorted(values)
    out = {}
    for q in qs:
        if not v:
            out[f"p{round(q * 100)}"] = float("nan")
            continue
        k = (len(v) - 1) * q
        lo, hi = int(k), min(int(k) + 1, len(v) - 1)
        out[f"p{round(q * 100)}"] = v[lo] + (v[hi] - v[lo]) * (k - lo)
    return out
