"""The buffer of frames for jobs not opened yet (issue 12 item 5c): bounded in bytes per peer."""

from __future__ import annotations

import pytest

from appliance.early_frames import MAX_BYTES_PER_PEER, EarlyFrames


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_one_peer_cannot_hold_more_than_its_byte_budget():
    """The flood that grew a node by 620 MiB: one peer, many job ids, full-size bodies."""
    early = EarlyFrames(max_bytes_per_peer=10_000)
    kept = [early.add(f"job_{i}", 1, [b"x"], 3_000) for i in range(10)]
    assert kept == [True, True, True] + [False] * 7
    assert early.bytes_held(1) == 9_000
    assert early.add("job_0", 1, [b"x"], 1_001) is False  # the same job too
    assert early.add("job_0", 1, [b"x"], 1_000) is True   # exactly the budget
    assert early.bytes_held(1) == 10_000
    # another peer has its own budget: peer 1's flood does not starve peer 2's real frames
    assert early.add("job_real", 2, [b"y"], 10_000) is True
    assert early.bytes_held(2) == 10_000


def test_taking_a_job_releases_its_bytes():
    early = EarlyFrames(max_bytes_per_peer=100)
    assert early.add("a", 1, ["f1"], 60) and early.add("a", 2, ["g1"], 50)
    assert not early.add("b", 1, ["f2"], 60)
    assert early.pop("a") == [(pytest.approx(early.clock(), abs=60), 1, ["f1"]),
                              (pytest.approx(early.clock(), abs=60), 2, ["g1"])]
    assert early.bytes_held(1) == 0 and early.bytes_held(2) == 0
    assert early.pop("a", []) == [] and early.pop("a", None) is None
    assert early.add("b", 1, ["f2"], 60)


def test_expiry_drops_old_jobs_and_their_bytes():
    clock = Clock()
    early = EarlyFrames(max_bytes_per_peer=100, clock=clock)
    early.add("old", 1, ["f"], 70)
    clock.t += 30
    early.add("new", 2, ["g"], 10)
    clock.t += 31
    early.expire(60.0)
    assert "old" not in early and "new" in early
    assert early.bytes_held(1) == 0 and early.bytes_held(2) == 10


def test_count_limits_still_hold():
    early = EarlyFrames(max_jobs=2, max_batches_per_job=2)
    assert early.add("a", 1, [], 1) and early.add("a", 1, [], 1)
    assert not early.add("a", 1, [], 1)
    assert early.add("b", 1, [], 1)
    assert not early.add("c", 1, [], 1)
    assert len(early) == 2


def test_default_budget_is_three_full_peer_bodies():
    assert MAX_BYTES_PER_PEER == 3 * (16 << 20)
    early = EarlyFrames()
    assert all(early.add(f"j{i}", 1, [], 16 << 20) for i in range(3))
    assert not early.add("j3", 1, [], 1)


@pytest.mark.asyncio
async def test_a_peer_flooding_unknown_job_ids_is_held_to_its_budget(tmp_path):
    """Through Node.receive_frames (the route's code path): one peer sends 5 MiB batches for
    ever new job ids; past its budget they are dropped (and counted), another peer's frames
    still wait for their job. The old buffer kept 256 jobs x 64 batches of any size."""
    from appliance.transport import encode_batch
    from tests.bare_node import bare_node

    node = bare_node(tmp_path)
    try:
        big = b"\x00" * (5 << 20)
        per_batch = len(encode_batch("job_0000", 1, [{"d": big}]))
        fits = MAX_BYTES_PER_PEER // per_batch
        dropped = [await node.frames.receive(f"job_{i:04d}", 1, encode_batch(f"job_{i:04d}", 1, [{"d": big}]))
                   for i in range(fits + 3)]
        assert dropped == [0] * fits + [1, 1, 1]
        assert node.metrics.dropped.labels("overflow")._value.get() == 3
        assert await node.frames.receive("job_peer2", 2, encode_batch("job_peer2", 2, [{"d": big}])) == 0
    finally:
        node.store.close()
        node.cpu.shutdown(wait=False)
        node.fast.shutdown(wait=False)
