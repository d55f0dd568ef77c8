"""Progress of a key operation (issue 15 item 9), in process: the ProgressBoard a node keeps
(fake clock), the session driver reporting a real 3-party keygen's rounds to the ProgressSink
passed in, and what the CLI shows of it (plain lines, or one bar redrawn on a terminal)."""

from __future__ import annotations

import io
import types

import pytest

from appliance.cli_progress import ProgressDisplay, describe
from appliance.jobs.driver import SessionDriver
from appliance.jobs.model import JobRun, phase_sid
from appliance.jobs.progress import ProgressBoard
from appliance.tss.group import SystemRNG
from appliance.tss.keygen import KeygenParty
from tests.node.fakes import FakeClock, FakeMetrics, FakeProgress, fake_runtime, with_identities

OP = {"operation_id": "op_1", "coordinator": 0}


def _board(clock: FakeClock, changed: list) -> ProgressBoard:
    return ProgressBoard(0, clock, changed.append)


def test_the_board_keeps_phases_in_order_with_their_durations_from_the_clock():
    clock, changed = FakeClock(1000.0), []
    board = _board(clock, changed)
    board.report(OP, "keygen", 0, 3)
    clock.t += 0.25
    board.report(OP, "keygen", 1, 3)
    board.report(OP, "keygen", 1, 3)  # nothing new: no change, no wake-up
    clock.t += 0.5
    board.report(OP, "keygen", 3, 3)
    clock.t += 0.125
    board.report(OP, "primes", 1, 4, "the pool is empty: generating a 1024-bit safe prime")
    assert board.view("op_1") == {
        "phase": "primes", "done": 1, "total": 4, "updated": 1000.875,
        "detail": "the pool is empty: generating a 1024-bit safe prime",
        "completed": [{"phase": "keygen", "done": 3, "total": 3, "ms": 875.0}]}
    board.report(OP, "primes", 2, 4)  # a report without a detail drops the old one
    assert "detail" not in board.view("op_1")
    assert changed == ["op_1"] * 5


def test_done_never_exceeds_total_nor_goes_below_zero():
    board = _board(FakeClock(), [])
    board.report(OP, "aux", 5, 3)
    assert (board.view("op_1")["done"], board.view("op_1")["total"]) == (3, 3)
    board.report(OP, "aux", -1, 0)
    assert (board.view("op_1")["done"], board.view("op_1")["total"]) == (0, 1)


def test_only_operations_coordinated_here_are_kept():
    board, changed = _board(FakeClock(), []), []
    board.report({"operation_id": "op_1", "coordinator": 1}, "keygen", 1, 3)  # a participant's part
    board.report({"coordinator": 0, "kind": "presign"}, "presign", 1, 4)  # no operation: a pool job
    assert board.view("op_1") is None and changed == []


def test_a_finished_operation_keeps_its_last_progress_and_ignores_late_reports():
    board = ProgressBoard(0, FakeClock(), lambda op_id: None, keep_finished=1)
    board.report(OP, "commit", 1, 1)
    board.finish("op_1")
    board.report(OP, "aux", 1, 3)
    assert board.view("op_1")["phase"] == "commit"
    board.report({"operation_id": "op_2", "coordinator": 0}, "keygen", 0, 3)
    board.finish("op_2")  # one finished operation kept: the oldest goes
    assert board.view("op_1") is None and board.view("op_2")["phase"] == "keygen"


class _Loopback:
    """The job's messages between three in-memory keygen parties: party 0 is driven by the
    SessionDriver under test; the two others answer at once, their messages to party 0 go on
    the job's queue."""

    def __init__(self, job: JobRun, sid: bytes, others: dict[int, KeygenParty]) -> None:
        self.job, self.sid, self.others = job, sid, others
        self.started = False

    async def send(self, job: JobRun, party, out: list) -> None:
        if not self.started:
            self.started = True
            for p in self.others.values():
                self._route(p.start())
        self._route(out)

    def _route(self, msgs: list) -> None:
        for m in msgs:
            for to in ([m.recipient] if m.recipient is not None else [0, 1, 2]):
                if to == m.sender:
                    continue
                if to == 0:
                    self.job.queues[self.sid].put_nowait(m)
                else:
                    self._route(self.others[to].receive(m))


@pytest.mark.asyncio
async def test_the_driver_reports_each_keygen_round_to_the_sink_it_was_given():
    rt = fake_runtime(None)
    signers = with_identities(rt)
    rt.config = types.SimpleNamespace(round_timeout_s=30.0)
    rt.metrics = FakeMetrics()

    async def cpu_call(fn, *args, fast=False, background=False):
        return fn(*args)

    rt.cpu_call = cpu_call
    job = JobRun({"job_id": "job_" + "a" * 24, "kind": "keygen", "parties": [0, 1, 2], "coordinator": 0,
                  "operation_id": "op_1"})
    sid = phase_sid(job.job_id, "keygen")
    parties = {i: KeygenParty(sid, i, [0, 1, 2], 2, signers[i], rt.directory, SystemRNG()) for i in range(3)}
    sink = FakeProgress()
    driver = SessionDriver(rt, _Loopback(job, sid, {1: parties[1], 2: parties[2]}), sink)
    share = await driver.drive(job, sid, parties[0])
    assert share.index == parties[0].result.index
    assert sink.seen == [("keygen", 0, 3, None), ("keygen", 1, 3, None), ("keygen", 2, 3, None),
                         ("keygen", 3, 3, None)]


def test_plain_lines_one_per_change_and_each_finished_phase_with_its_time():
    out = io.StringIO()
    show = ProgressDisplay(out, tty=False)
    show({"phase": "keygen", "done": 0, "total": 3, "completed": []})
    show({"phase": "keygen", "done": 0, "total": 3, "completed": []})  # the same again: no line
    show({"phase": "keygen", "done": 2, "total": 3, "completed": []})
    show({"phase": "primes", "done": 4, "total": 4, "completed": [{"phase": "keygen", "done": 3, "total": 3,
                                                                   "ms": 412.0}]})
    show({"phase": "waiting_for_approval", "done": 1, "total": 2, "detail": "1 more of admin", "completed": []})
    show.close()
    assert out.getvalue().splitlines() == [
        "keygen round 0/3", "keygen round 2/3", "keygen round 3/3 done in 0.4 s", "primes 4/4",
        "waiting for approval 1/2 (1 more of admin)"]


def test_on_a_terminal_one_bar_is_redrawn_and_finished_phases_stay_above_it():
    out, t = io.StringIO(), [10.0]
    show = ProgressDisplay(out, tty=True, clock=lambda: t[0])
    show({"phase": "aux", "done": 1, "total": 3, "completed": []})
    t[0] = 12.5
    show({"phase": "commit", "done": 0, "total": 1, "completed": [{"phase": "aux", "done": 3, "total": 3,
                                                                   "ms": 2000.0}]})
    show.close()
    bar1 = "[#######.............] aux round 1/3  0.0 s"
    bar2 = "[....................] commit 0/1  2.5 s"
    assert out.getvalue() == ("\r" + bar1 + "\r" + " " * len(bar1) + "\r" + "aux round 3/3 done in 2.0 s\n"
                              + "\r" + bar2 + "\n")


def test_describe_names_rounds_and_counts():
    assert describe({"phase": "refresh", "done": 2, "total": 3}) == "refresh round 2/3"
    assert describe({"phase": "aux_keys", "done": 0, "total": 1, "detail": "x"}) == "aux keys 0/1 (x)"
