"""Signing has priority over pool refills (issue 18): a refill's protocol steps run on worker
threads ``BACKGROUND_NICE`` steps lower than the event loop and the signing threads, so a
presign under way yields the cores to a signature instead of competing with it."""

from __future__ import annotations

import os
import threading

import pytest

from appliance.runtime import BACKGROUND_NICE, lane
from tests.bare_node import bare_node


def _priority() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_jobs_choose_their_lane():
    assert lane("sign", "sign") == {"fast": True, "background": False}
    assert lane("presign", "presign") == {"fast": False, "background": True}  # a pool refill
    assert lane("frost_nonces", "frost_nonces") == {"fast": False, "background": True}
    assert lane("aux_gen", "aux") == {"fast": False, "background": True}  # the aux-info pool
    # a presign a sign job waits for (no pool), keygen, aux-info: the protocol threads
    assert lane("sign", "presign") == {"fast": False, "background": False}
    assert lane("keygen", "aux") == {"fast": False, "background": False}


@pytest.mark.asyncio
async def test_background_lane_runs_at_lower_os_priority(tmp_path):
    rt = bare_node(tmp_path).rt
    try:
        base = _priority()
        assert await rt.cpu_call(_priority, fast=True) == base
        assert await rt.cpu_call(_priority) == base
        assert await rt.cpu_call(_priority, background=True) == min(base + BACKGROUND_NICE, 19)
        assert _priority() == base  # the event loop's thread is left as it was
    finally:
        rt.shutdown_pools()
